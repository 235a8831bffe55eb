#include "core/process/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "core/util/fd.hpp"

namespace kiln::process {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using util::UniqueFd;

constexpr std::size_t kTailBytes = 4096;
constexpr std::size_t kMaxLineBytes = 64 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
// Reads per pipe per poll round, so a flooding child cannot starve the deadline and stop checks.
constexpr int kReadsPerRound = 16;
constexpr auto kPollSlice = 100ms;
// After the group is killed, how long EOF on the pipes is waited for. Only a process that left
// the group (setsid) can hold them open that long, and it is not waited for.
constexpr auto kDrainGrace = 1s;
// Keeps the deadline arithmetic inside steady_clock's range for absurd timeouts.
constexpr auto kMaxTimeout = std::chrono::milliseconds(std::chrono::hours(24 * 365 * 10));
constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";
constexpr std::string_view kTruncatedMarker = "[kiln: log truncated]\n";

using Resource = decltype(RLIMIT_AS);

struct LimitSetting {
    Resource resource;
    rlimit value;
};

// Everything the child needs between fork and execve, prepared beforehand so the child only
// makes async-signal-safe calls.
struct ExecPlan {
    const char* path = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* workdir = nullptr;  // null: keep the parent's
    int stdin_fd = -1;
    int stdout_fd = -1;
    int stderr_fd = -1;
    int report_fd = -1;
    std::array<LimitSetting, 4> limits{};
    std::size_t limit_count = 0;
};

// Written by the child to the CLOEXEC report pipe when it fails before or in execve.
enum class Stage : int { setup, chdir, setrlimit, execve };

struct StartFailure {
    Stage stage = Stage::setup;
    int err = 0;
};

[[noreturn]] void report_and_exit(int fd, Stage stage, int err) noexcept {
    const StartFailure failure{stage, err};
    // A single write below PIPE_BUF is atomic; if it fails the parent sees exit 127 instead.
    [[maybe_unused]] ssize_t n = ::write(fd, &failure, sizeof failure);
    ::_exit(127);
}

bool move_fd(int from, int to) noexcept {
    if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;  // dup2 would keep FD_CLOEXEC
    return ::dup2(from, to) == to;
}

// Runs in the forked child: async-signal-safe calls only (no allocation, no locks).
[[noreturn]] void exec_child(const ExecPlan& plan) noexcept {
    ::setpgid(0, 0);

    // The parent blocked every signal around fork, so no inherited handler can run here. Ignored
    // signals survive execve, so reset them too (SIGPIPE above all), then unblock everything.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < _NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for glibc's internal signals
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    if (!move_fd(plan.stdin_fd, STDIN_FILENO) || !move_fd(plan.stdout_fd, STDOUT_FILENO) ||
        !move_fd(plan.stderr_fd, STDERR_FILENO)) {
        report_and_exit(plan.report_fd, Stage::setup, errno);
    }
    // Our own fds are all O_CLOEXEC; this also covers descriptors other code in the daemon opened
    // without it. Failure (old kernel) is not fatal.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

    if (plan.workdir != nullptr && ::chdir(plan.workdir) != 0) {
        report_and_exit(plan.report_fd, Stage::chdir, errno);
    }
    for (std::size_t i = 0; i < plan.limit_count; ++i) {
        if (::setrlimit(plan.limits[i].resource, &plan.limits[i].value) != 0) {
            report_and_exit(plan.report_fd, Stage::setrlimit, errno);
        }
    }
    ::execve(plan.path, plan.argv, plan.envp);
    report_and_exit(plan.report_fd, Stage::execve, errno);
}

// Owns a forked child until it is reaped. Destroying it early (an error, an exception from
// on_stdout_line) kills the whole group and reaps, so no converter outlives run_child.
class StartedChild final {
  public:
    explicit StartedChild(pid_t pid) : pid_(pid) {}
    ~StartedChild() {
        if (pid_ > 0) {
            kill_group();
            reap();
        }
    }
    StartedChild(StartedChild&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
    StartedChild& operator=(StartedChild&&) = delete;
    StartedChild(const StartedChild&) = delete;
    StartedChild& operator=(const StartedChild&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] bool reaped() const { return pid_ <= 0; }

    // Only called while the child is unreaped (running or a zombie): its pid still holds the
    // group id, so the group cannot be a recycled one. The child itself is signalled as well in
    // case it moved to another group.
    void kill_group() noexcept {
        if (pid_ <= 0) return;
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
    }

    // Blocks until the child is gone; returns its wait status.
    int reap() noexcept {
        int status = 0;
        if (pid_ <= 0) return status;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return status;
    }

  private:
    pid_t pid_ = -1;
};

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

// Keeps 0, 1 and 2 free (a daemon may run with them closed), so the child's dup2 onto them never
// overwrites another of its descriptors.
Result<UniqueFd> above_stdio(UniqueFd fd) {
    if (fd.get() > STDERR_FILENO) return fd;
    const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (moved < 0) return fail_errno("fcntl(F_DUPFD_CLOEXEC)", errno);
    return UniqueFd(moved);
}

Result<Pipe> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fail_errno("pipe2", errno);
    UniqueFd read_end(fds[0]);
    UniqueFd write_end(fds[1]);
    auto r = above_stdio(std::move(read_end));
    if (!r) return std::unexpected(r.error());
    auto w = above_stdio(std::move(write_end));
    if (!w) return std::unexpected(w.error());
    return Pipe{std::move(*r), std::move(*w)};
}

Result<> set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return fail_errno("fcntl(O_NONBLOCK)", errno);
    }
    return {};
}

std::string_view env_value(const std::vector<std::string>& env, std::string_view name) {
    for (const std::string& entry : env) {
        std::string_view e = entry;
        if (e.size() > name.size() && e.starts_with(name) && e[name.size()] == '=') {
            return e.substr(name.size() + 1);
        }
    }
    return {};
}

bool is_executable_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

// The program execve gets: argv[0] as given when it has a '/', else the first executable match in
// the child's PATH. Relative PATH entries are skipped: they would resolve inside the work
// directory, which holds user-supplied files.
Result<std::string> resolve_program(const std::string& name, const std::vector<std::string>& env) {
    if (name.find('/') != std::string::npos) {
        if (name.front() == '/') return name;
        std::error_code ec;
        auto absolute = std::filesystem::absolute(name, ec);
        if (ec) return fail_errno("resolve " + name, ec.value());
        return absolute.string();
    }
    std::string_view path = env_value(env, "PATH");
    if (path.empty()) path = kDefaultPath;
    while (!path.empty()) {
        const std::size_t colon = path.find(':');
        const std::string_view dir = path.substr(0, colon);
        path = colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
        if (dir.empty() || dir.front() != '/') continue;
        std::string candidate(dir);
        if (candidate.back() != '/') candidate += '/';
        candidate += name;
        if (is_executable_file(candidate)) return candidate;
    }
    return fail(ErrorCode::not_found, name + ": program not found in PATH");
}

Result<> plan_limits(const Limits& limits, ExecPlan& plan) {
    const std::pair<Resource, const std::optional<std::uint64_t>*> wanted[] = {
        {RLIMIT_CPU, &limits.cpu_seconds},
        {RLIMIT_AS, &limits.address_space_bytes},
        {RLIMIT_NOFILE, &limits.open_files},
        {RLIMIT_FSIZE, &limits.file_size_bytes},
    };
    for (const auto& [resource, value] : wanted) {
        if (!value->has_value()) continue;
        rlimit current{};
        if (::getrlimit(resource, &current) != 0) return fail_errno("getrlimit", errno);
        // Soft and hard both, so the converter cannot raise its own limit; never above the
        // current hard limit, which an unprivileged daemon could not raise anyway.
        const rlim_t want = std::min<std::uint64_t>(**value, current.rlim_max);
        rlimit next{want, want};
        // One second between soft and hard CPU limit: SIGXCPU names the cause, SIGKILL follows.
        if (resource == RLIMIT_CPU && want < current.rlim_max) next.rlim_max = want + 1;
        plan.limits[plan.limit_count++] = LimitSetting{resource, next};
    }
    return {};
}

std::string_view stage_name(Stage stage) {
    switch (stage) {
        case Stage::setup:
            return "dup2";
        case Stage::chdir:
            return "chdir";
        case Stage::setrlimit:
            return "setrlimit";
        case Stage::execve:
            return "execve";
    }
    return "start";
}

Error start_error(const StartFailure& failure, const std::string& path, const ChildSpec& spec) {
    std::string operation(stage_name(failure.stage));
    if (failure.stage == Stage::execve) operation += " " + path;
    if (failure.stage == Stage::chdir) operation += " " + spec.workdir.string();
    if (failure.stage == Stage::execve && (failure.err == ENOENT || failure.err == ENOTDIR)) {
        const char* name = strerrorname_np(failure.err);
        return Error{ErrorCode::not_found, operation + ": " + std::strerror(failure.err),
                     name != nullptr ? name : std::to_string(failure.err)};
    }
    return fail_errno(operation, failure.err).error();
}

// Splits stdout into lines, keeps the size-capped log and the tail of stdout+stderr.
class OutputCollector final {
  public:
    OutputCollector(int log_fd, std::uint64_t log_budget,
                    const std::function<void(std::string_view)>& on_line)
        : log_fd_(log_fd), log_left_(log_budget), on_line_(on_line) {}

    void add(bool is_stdout, std::string_view data) {
        append_log(data);
        append_tail(data);
        if (is_stdout && on_line_) split_lines(data);
    }

    // Delivers a last stdout line that had no newline.
    void finish() {
        if (!line_.empty() && on_line_) on_line_(line_);
        line_.clear();
    }

    std::string take_tail() {
        if (tail_.size() > kTailBytes) {
            tail_.erase(0, tail_.size() - kTailBytes);
            tail_cut_ = true;
        }
        // Do not start in the middle of a UTF-8 sequence.
        std::size_t skip = 0;
        while (tail_cut_ && skip < 3 && skip < tail_.size() &&
               (static_cast<unsigned char>(tail_[skip]) & 0xC0) == 0x80) {
            ++skip;
        }
        tail_.erase(0, skip);
        return std::move(tail_);
    }

  private:
    void append_log(std::string_view data) {
        if (log_fd_ < 0 || log_done_ || data.empty()) return;
        if (data.size() <= log_left_) {
            write_log(data);
            log_left_ -= data.size();
            return;
        }
        write_log(data.substr(0, static_cast<std::size_t>(log_left_)));
        log_left_ = 0;
        if (!log_at_line_start_) write_log("\n");
        write_log(kTruncatedMarker);
        log_done_ = true;
    }

    void write_log(std::string_view data) {
        while (!data.empty() && !log_done_) {
            const ssize_t n = ::write(log_fd_, data.data(), data.size());
            if (n < 0 && errno == EINTR) continue;
            // A failing log (disk full) must not stop the child: the output is dropped instead.
            if (n <= 0) {
                log_done_ = true;
                return;
            }
            log_at_line_start_ = data[static_cast<std::size_t>(n) - 1] == '\n';
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }

    void append_tail(std::string_view data) {
        if (data.size() >= kTailBytes) {
            tail_.assign(data.substr(data.size() - kTailBytes));
            tail_cut_ = true;
            return;
        }
        tail_.append(data);
        if (tail_.size() > 2 * kTailBytes) {  // trimmed in batches to keep appends cheap
            tail_.erase(0, tail_.size() - kTailBytes);
            tail_cut_ = true;
        }
    }

    void split_lines(std::string_view data) {
        while (!data.empty()) {
            const std::size_t newline = data.find('\n');
            const std::string_view piece = data.substr(0, newline);
            if (newline != std::string_view::npos && line_.empty()) {
                on_line_(piece.substr(0, kMaxLineBytes));  // the common case: no copy
            } else {
                if (line_.size() < kMaxLineBytes) {
                    line_.append(piece.substr(0, kMaxLineBytes - line_.size()));
                }
                if (newline == std::string_view::npos) return;
                on_line_(line_);
                line_.clear();
            }
            data.remove_prefix(newline + 1);
        }
    }

    int log_fd_;
    std::uint64_t log_left_;
    bool log_done_ = false;
    bool log_at_line_start_ = true;
    const std::function<void(std::string_view)>& on_line_;
    std::string tail_;
    bool tail_cut_ = false;
    std::string line_;  // an unfinished stdout line, at most kMaxLineBytes
};

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

// vfork: no copy of the daemon's page tables (fork's cost grows with the process; glibc's
// posix_spawn does the same). Safe because the child only makes async-signal-safe calls on the
// prepared plan and ends in execve or _exit, with every signal blocked. In its own function so
// that no caller's locals live across the vfork.
[[gnu::noinline]] pid_t vfork_exec(const ExecPlan& plan) {
    const pid_t pid = ::vfork();
    if (pid == 0) exec_child(plan);
    return pid;
}

Result<ChildOutcome> run_child(const ChildSpec& spec) {
    if (spec.argv.empty() || spec.argv.front().empty()) {
        return fail(ErrorCode::invalid_request, "run_child: empty argv");
    }
    for (const auto* list : {&spec.argv, &spec.env}) {
        for (const std::string& s : *list) {
            if (s.find('\0') != std::string::npos) {
                return fail(ErrorCode::invalid_request, "run_child: argument contains NUL");
            }
        }
    }
    auto program = resolve_program(spec.argv.front(), spec.env);
    if (!program) return std::unexpected(program.error());

    std::vector<char*> argv;
    argv.reserve(spec.argv.size() + 1);
    for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    envp.reserve(spec.env.size() + 1);
    for (const std::string& var : spec.env) envp.push_back(const_cast<char*>(var.c_str()));
    envp.push_back(nullptr);

    ExecPlan plan;
    plan.path = program->c_str();
    plan.argv = argv.data();
    plan.envp = envp.data();
    plan.workdir = spec.workdir.empty() ? nullptr : spec.workdir.c_str();
    if (auto planned = plan_limits(spec.limits, plan); !planned) {
        return std::unexpected(planned.error());
    }

    UniqueFd log;
    std::uint64_t log_budget = 0;
    if (!spec.log_file.empty()) {
        log.reset(::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
        if (!log.valid()) return fail_errno("open " + spec.log_file.string(), errno);
        // The cap is on the file, which may already hold an earlier attempt's output.
        struct stat st {};
        if (::fstat(log.get(), &st) != 0)
            return fail_errno("fstat " + spec.log_file.string(), errno);
        const auto existing = static_cast<std::uint64_t>(st.st_size);
        log_budget = existing < spec.max_log_bytes ? spec.max_log_bytes - existing : 0;
    }

    UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null_fd.valid()) return fail_errno("open /dev/null", errno);
    auto dev_null = above_stdio(std::move(null_fd));
    if (!dev_null) return std::unexpected(dev_null.error());
    auto out = make_pipe();
    if (!out) return std::unexpected(out.error());
    auto err = make_pipe();
    if (!err) return std::unexpected(err.error());
    auto report = make_pipe();
    if (!report) return std::unexpected(report.error());
    for (int fd : {out->read.get(), err->read.get()}) {
        if (auto ok = set_nonblocking(fd); !ok) return std::unexpected(ok.error());
    }
    plan.stdin_fd = dev_null->get();
    plan.stdout_fd = out->write.get();
    plan.stderr_fd = err->write.get();
    plan.report_fd = report->write.get();

    // Every signal stays blocked from fork until the child has reset its dispositions, so none of
    // the daemon's handlers can run in the child.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    const auto start = Clock::now();
    const pid_t pid = vfork_exec(plan);
    const int vfork_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pid < 0) return fail_errno("vfork", vfork_errno);

    StartedChild child(pid);
    ::setpgid(pid, pid);  // also done by the child; whichever runs first wins the race
    dev_null->reset();
    out->write.reset();
    err->write.reset();
    report->write.reset();

    // EOF means execve succeeded (the CLOEXEC write end closed); a record means it did not.
    StartFailure failure;
    ssize_t got = 0;
    do {
        got = ::read(report->read.get(), &failure, sizeof failure);
    } while (got < 0 && errno == EINTR);
    if (got == static_cast<ssize_t>(sizeof failure)) {
        child.kill_group();
        child.reap();
        return std::unexpected(start_error(failure, *program, spec));
    }
    report->read.reset();

    // Without pidfd (kernel < 5.3) exit is noticed by the 100 ms poll slices instead.
    UniqueFd pidfd(open_pidfd(pid));

    ChildOutcome outcome;
    OutputCollector output(log.get(), log_budget, spec.on_stdout_line);
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
            fds[count++] = pollfd{out->read.get(), POLLIN, 0};
        }
        if (err_open) {
            err_slot = static_cast<int>(count);
            fds[count++] = pollfd{err->read.get(), POLLIN, 0};
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
                out_open = read_available(out->read.get(), true, buffer, output);
            }
            if (err_slot >= 0 && fds[err_slot].revents != 0) {
                err_open = read_available(err->read.get(), false, buffer, output);
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
