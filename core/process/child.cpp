#include "core/process/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/process/output_collector.hpp"
#include "core/process/spawn.hpp"
#include "core/util/fd.hpp"

namespace kiln::process {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using util::UniqueFd;

constexpr std::size_t kReadChunk = 64 * 1024;
// Reads per pipe per poll round, so a flooding child cannot starve the deadline and stop checks.
constexpr int kReadsPerRound = 16;
constexpr auto kPollSlice = 100ms;
// After the group is killed, how long EOF on the pipes is waited for. Only a process that left
// the group (setsid) can hold them open that long, and it is not waited for.
constexpr auto kDrainGrace = 1s;
// Keeps the deadline arithmetic inside steady_clock's range for absurd timeouts.
constexpr auto kMaxTimeout = std::chrono::milliseconds(std::chrono::hours(24 * 365 * 10));

// Reads what is available without blocking. Returns false at EOF (or a read error).
bool read_available(int fd, bool is_stdout, std::vector<char>& buffer, OutputCollector& output) {
    for (int i = 0; i < kReadsPerRound; ++i) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n > 0) {
            output.add(is_stdout, std::string_view(buffer.data(), static_cast<std::size_t>(n)));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        return false;
    }
    return true;
}

// The child's pid is a zombie (or gone): true without reaping it, so the group can still be
// killed safely. Used only when pidfd_open is unavailable.
bool has_exited(pid_t pid) {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C", so its pidfd_open does not link from C++.
int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int poll_timeout_ms(Clock::time_point now, Clock::time_point until) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
    return static_cast<int>(std::clamp(left, 0ms, std::chrono::milliseconds(kPollSlice)).count());
}

std::string seconds_text(std::chrono::milliseconds duration) {
    const auto ms = duration.count();
    if (ms >= 10'000) return std::to_string(ms / 1000) + " s";
    const auto tenths = ms / 100;
    if (tenths % 10 == 0) return std::to_string(tenths / 10) + " s";
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " s";
}

// The log file opened for appending, and how much more it may take: the cap is on the file,
// which may already hold an earlier attempt's output. No file: an invalid fd and budget 0.
Result<std::pair<UniqueFd, std::uint64_t>> open_log(const ChildSpec& spec) {
    if (spec.log_file.empty()) return std::pair<UniqueFd, std::uint64_t>{};
    UniqueFd log(::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!log.valid()) return fail_errno("open " + spec.log_file.string(), errno);
    struct stat st {};
    if (::fstat(log.get(), &st) != 0) return fail_errno("fstat " + spec.log_file.string(), errno);
    const auto existing = static_cast<std::uint64_t>(st.st_size);
    const std::uint64_t budget = existing < spec.max_log_bytes ? spec.max_log_bytes - existing : 0;
    return std::pair{std::move(log), budget};
}

}  // namespace

std::string ChildOutcome::describe() const {
    if (stopped) return "stopped";
    if (timed_out) return "timed out after " + seconds_text(duration);
    if (term_signal != 0) {
        std::string text = "killed by signal " + std::to_string(term_signal);
        if (const char* abbrev = sigabbrev_np(term_signal); abbrev != nullptr) {
            text += " (SIG" + std::string(abbrev) + ")";
        } else if (const char* name = strsignal(term_signal); name != nullptr) {
            text += " (" + std::string(name) + ")";
        }
        return text;
    }
    return "exit status " + std::to_string(exit_code);
}

Result<ChildOutcome> run_child(const ChildSpec& spec) {
    auto log = open_log(spec);
    if (!log) return std::unexpected(log.error());
    auto running = start_child(spec);
    if (!running) return std::unexpected(running.error());
    StartedChild& child = running->child;
    const pid_t pid = child.pid();
    const auto start = running->started_at;
    UniqueFd& out_read = running->stdout_read;
    UniqueFd& err_read = running->stderr_read;

    // Without pidfd (kernel < 5.3) exit is noticed by the 100 ms poll slices instead.
    UniqueFd pidfd(open_pidfd(pid));

    ChildOutcome outcome;
    OutputCollector output(log->first.get(), log->second, spec.on_stdout_line,
                           spec.stdout_only_parsed);
    std::vector<char> buffer(kReadChunk);
    const auto deadline = start + std::clamp(spec.timeout, 0ms, kMaxTimeout);
    Clock::time_point drain_deadline;
    bool out_open = true;
    bool err_open = true;

    // Kills the group while the child is still unreaped (so its pid still pins the group id),
    // then reaps it and gives the pipes a bounded time to reach EOF.
    const auto finish_child = [&] {
        child.kill_group();
        const int status = child.reap();
        const auto now = Clock::now();
        outcome.duration = std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
        if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) outcome.term_signal = WTERMSIG(status);
        pidfd.reset();
        drain_deadline = now + kDrainGrace;
    };

    while (true) {
        auto now = Clock::now();
        if (!child.reaped()) {
            if (spec.stop != nullptr && spec.stop->load(std::memory_order_relaxed)) {
                outcome.stopped = true;
                finish_child();
            } else if (now >= deadline) {
                outcome.timed_out = true;
                finish_child();
            }
            now = Clock::now();
        }
        if (child.reaped() && ((!out_open && !err_open) || now >= drain_deadline)) break;

        std::array<pollfd, 3> fds{};
        nfds_t count = 0;
        int out_slot = -1;
        int err_slot = -1;
        int pid_slot = -1;
        if (out_open) {
            out_slot = static_cast<int>(count);
            fds[count++] = pollfd{out_read.get(), POLLIN, 0};
        }
        if (err_open) {
            err_slot = static_cast<int>(count);
            fds[count++] = pollfd{err_read.get(), POLLIN, 0};
        }
        if (!child.reaped() && pidfd.valid()) {
            pid_slot = static_cast<int>(count);
            fds[count++] = pollfd{pidfd.get(), POLLIN, 0};
        }
        const int timeout = poll_timeout_ms(now, child.reaped() ? drain_deadline : deadline);
        const int ready = ::poll(fds.data(), count, timeout);
        if (ready < 0 && errno != EINTR) {
            // Cannot happen with valid fds; do not spin, stop the child instead.
            if (!child.reaped()) finish_child();
            break;
        }
        if (ready > 0) {
            if (out_slot >= 0 && fds[out_slot].revents != 0) {
                out_open = read_available(out_read.get(), true, buffer, output);
            }
            if (err_slot >= 0 && fds[err_slot].revents != 0) {
                err_open = read_available(err_read.get(), false, buffer, output);
            }
        }
        if (!child.reaped()) {
            const bool exited = pid_slot >= 0 ? (ready > 0 && fds[pid_slot].revents != 0)
                                              : (!pidfd.valid() && has_exited(pid));
            if (exited) finish_child();  // grandchildren must not outlive the converter
        }
    }
    output.finish();
    outcome.log_tail = output.take_tail();
    return outcome;
}

}  // namespace kiln::process
