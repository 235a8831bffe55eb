#pragma once
// The FastCGI side of kiln-api: a listening socket (a unix socket path, or the one systemd
// passes), and a pool of threads, each with its own FCGX_Request, that wait in one epoll set for
// a new connection or for the next request on a connection nginx keeps (fastcgi_keep_conn), so
// an idle pooled connection never holds a thread. libfcgi parses the records; this is the only
// file pair that includes <fcgiapp.h>.

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "core/http/request.hpp"
#include "core/http/response.hpp"
#include "core/result.hpp"
#include "core/util/fd.hpp"

namespace kiln::http {

// Per-thread request handling; made once per thread so it can own a database connection and a
// libmagic cookie.
class ThreadHandler {
  public:
    virtual ~ThreadHandler() = default;
    virtual Response handle(Request& request) = 0;
};

class FcgiServer final {
  public:
    // Uses the socket systemd passed if there is one, else creates `socket_path` (mode 0660,
    // replacing a stale socket file). Fails with io when the socket cannot be created.
    static Result<std::unique_ptr<FcgiServer>> open(const std::string& socket_path);
    ~FcgiServer();

    // Runs `threads` serving loops until stop(); each thread calls `make_handler` first.
    // Fails with config when a handler cannot be made (e.g. the magic database is missing).
    Result<> run(unsigned threads,
                 const std::function<Result<std::unique_ptr<ThreadHandler>>()>& make_handler);

    // Thread-safe (called from the signal-handling thread). Requests in progress complete and
    // their connections close; no new request is read.
    void stop();

  private:
    FcgiServer(int fd, std::string owned_path, util::UniqueFd epoll_fd, util::UniqueFd stop_fd)
        : listen_fd_(fd),
          owned_path_(std::move(owned_path)),
          epoll_fd_(std::move(epoll_fd)),
          stop_fd_(std::move(stop_fd)) {}
    void serve_loop(ThreadHandler& handler);
    // A connected socket with a request to read, or -1 once stop() was called.
    int next_connection();
    // Takes every connection waiting on the listening socket into the epoll set.
    void accept_pending();
    int listen_fd_;
    std::string owned_path_;  // removed on destruction when we created it
    util::UniqueFd epoll_fd_;
    util::UniqueFd stop_fd_;  // an eventfd, set by stop()
    std::atomic<bool> stopping_{false};
};

}  // namespace kiln::http
