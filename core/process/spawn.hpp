#pragma once
// Starting a converter's process: the program looked up in the child's PATH, an argument vector
// (never a shell), its own process group, stdin on /dev/null, stdout and stderr on pipes, and
// resource limits, and SIGKILL when the daemon dies. A failure before or in execve comes back
// as an error naming the step.
// Internal to core/process; run_child (child.cpp) supervises what this starts.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <utility>

#include "core/process/child.hpp"
#include "core/result.hpp"
#include "core/util/fd.hpp"

namespace kiln::process {

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

struct RunningChild {
    StartedChild child;
    util::UniqueFd stdout_read;  // non-blocking
    util::UniqueFd stderr_read;  // non-blocking
    std::chrono::steady_clock::time_point started_at;
};

// Starts spec.argv with spec.env in spec.workdir under spec.limits. Fails with invalid_request
// for an empty argv or a NUL in an argument, not_found when the program does not exist, and io
// when pipes, the process or a step before execve fail.
Result<RunningChild> start_child(const ChildSpec& spec);

}  // namespace kiln::process
