#pragma once
// A relay between kiln processes and the stack's MariaDB unix socket that can break a
// connection at the worst moment for a claim: right after the claim's COMMIT has been applied
// and before its answer reaches the worker, which then cannot know whether it holds the jobs.
// Processes use it through KILN_DB (url()).

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/util/fd.hpp"

namespace kiln::test {

class DbProxy {
  public:
    // Listens on `listen`, relaying each connection to the server socket `upstream`.
    DbProxy(std::filesystem::path listen, std::filesystem::path upstream);
    ~DbProxy();
    DbProxy(const DbProxy&) = delete;
    DbProxy& operator=(const DbProxy&) = delete;

    // KILN_DB for a process to connect through the relay as `user` to database `name`.
    std::string url(const std::string& user, const std::string& name) const;

    // The next COMMIT of a transaction that marked jobs running (a claim's UPDATE) is passed on,
    // the server's answer read and dropped, and that connection closed on both sides.
    void break_next_claim_commit() { armed_ = true; }
    // How many connections were broken so.
    int broken() const { return broken_; }
    // Closes every connection relayed now, as a database restart would; new ones are relayed.
    void cut_all() { ++cuts_; }

  private:
    void accept_loop();
    void relay(util::UniqueFd client);

    std::filesystem::path listen_path_;
    std::filesystem::path upstream_;
    util::UniqueFd listener_;
    util::UniqueFd stop_;  // an eventfd: readable once the relay stops
    std::atomic<bool> armed_{false};
    std::atomic<int> broken_{0};
    std::atomic<int> cuts_{0};  // relays started before the latest cut_all() end
    std::mutex threads_mutex_;
    std::vector<std::thread> threads_;
    std::thread acceptor_;
};

}  // namespace kiln::test
