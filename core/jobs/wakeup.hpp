#pragma once
// Waking idle workers on the same host the moment a job is created. MariaDB has no LISTEN/NOTIFY,
// so each worker binds a unix datagram socket in the wake-up directory and kiln-api sends a
// one-byte datagram to every socket there after committing a job. A lost datagram costs only
// latency: workers also poll (adaptively) and so still find the job.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/util/fd.hpp"

namespace kiln::jobs {

class WakeupListener final {
  public:
    // Binds dir/NAME.sock (replacing a stale one; the directory is created when missing).
    static Result<WakeupListener> open(const std::filesystem::path& dir, const std::string& name);
    ~WakeupListener();
    WakeupListener(WakeupListener&&) noexcept = default;
    WakeupListener& operator=(WakeupListener&&) noexcept = default;

    [[nodiscard]] int fd() const { return fd_.get(); }  // readable when woken (for poll)
    // Reads every pending datagram; returns how many there were.
    int drain();

  private:
    WakeupListener(util::UniqueFd fd, std::filesystem::path path, ino_t inode)
        : fd_(std::move(fd)), path_(std::move(path)), inode_(inode) {}
    util::UniqueFd fd_;
    std::filesystem::path path_;
    ino_t inode_ = 0;  // of the socket file we bound: a successor's file is left alone
};

// Not thread-safe: one per thread.
class WakeupSender final {
  public:
    explicit WakeupSender(std::filesystem::path dir);
    // Sends to every worker socket in the directory, never blocking (a full socket buffer means
    // that worker is already awake). The directory listing is cached for a second.
    void notify();

  private:
    std::filesystem::path dir_;
    util::UniqueFd fd_;
    std::vector<std::string> targets_;
    std::chrono::steady_clock::time_point listed_at_{};
};

}  // namespace kiln::jobs
