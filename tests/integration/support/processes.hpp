#pragma once
// Starting extra kiln processes from a test: started with an argument vector, output to a log
// file, and stopped by the guard (TERM, then KILL after a timeout) when it goes out of scope.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::test {

class SpawnedProcess {
  public:
    SpawnedProcess(const std::vector<std::string>& argv, const std::filesystem::path& log);
    ~SpawnedProcess();
    SpawnedProcess(const SpawnedProcess&) = delete;
    SpawnedProcess& operator=(const SpawnedProcess&) = delete;

    // Sends `signal` and waits for the exit; returns the exit status (or 128+signal), -1 when it
    // did not exit within `timeout` (it is then killed).
    int stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(20));
    [[nodiscard]] int pid() const { return pid_; }
    [[nodiscard]] const std::filesystem::path& log() const { return log_; }

  private:
    int pid_ = -1;
    std::filesystem::path log_;
};

// The kiln-worker binary next to the kilnctl that scripts/test built.
std::filesystem::path worker_binary();

}  // namespace kiln::test
