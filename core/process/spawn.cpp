#include "core/process/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace kiln::process {
namespace {

using Clock = std::chrono::steady_clock;
using util::UniqueFd;

constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

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
    pid_t parent = -1;  // the daemon: the child is killed when it dies
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
    // A daemon killed with SIGKILL cannot stop its converters: without this one would run on
    // beside the job's next attempt. (Under systemd the unit's cgroup is killed too; this covers
    // daemons started otherwise. Only this process gets the signal, not programs it starts.)
    // Checked after setting: the parent may have died before.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != plan.parent) ::_exit(127);

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

// vfork: no copy of the daemon's page tables (fork's cost grows with the process; glibc's
// posix_spawn does the same). Safe because the child only makes async-signal-safe calls on the
// prepared plan and ends in execve or _exit, with every signal blocked. In its own function so
// that no caller's locals live across the vfork.
[[gnu::noinline]] pid_t vfork_exec(const ExecPlan& plan) {
    const pid_t pid = ::vfork();
    if (pid == 0) exec_child(plan);
    return pid;
}

}  // namespace

Result<RunningChild> start_child(const ChildSpec& spec) {
    if (spec.argv.empty() || spec.argv.front().empty()) {
        return fail(ErrorCode::invalid_request, "start_child: empty argv");
    }
    for (const auto* list : {&spec.argv, &spec.env}) {
        for (const std::string& s : *list) {
            if (s.find('\0') != std::string::npos) {
                return fail(ErrorCode::invalid_request, "start_child: argument contains NUL");
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
    plan.parent = ::getpid();
    plan.path = program->c_str();
    plan.argv = argv.data();
    plan.envp = envp.data();
    plan.workdir = spec.workdir.empty() ? nullptr : spec.workdir.c_str();
    if (auto planned = plan_limits(spec.limits, plan); !planned) {
        return std::unexpected(planned.error());
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
    return RunningChild{std::move(child), std::move(out->read), std::move(err->read), start};
}

}  // namespace kiln::process
