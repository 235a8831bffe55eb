#pragma once
// The FastCGI side of kiln-api: a listening socket (a unix socket path, or the one systemd
// passes), and a pool of request threads that wait in one epoll set for a new connection or for
// the next request on a connection nginx keeps (fastcgi_keep_conn), so an idle pooled connection
// never holds a thread. A request with a body (an upload) is handed to a second pool, the upload
// threads: a client may take minutes to send one, and uploads in progress must not leave no
// thread for the polls and downloads of everyone else. libfcgi parses the records; this is the
// only file pair that includes <fcgiapp.h>.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>

#include "core/http/request.hpp"
#include "core/http/response.hpp"
#include "core/result.hpp"
#include "core/util/fd.hpp"
#include "core/util/work_queue.hpp"

struct FCGX_Request;  // <fcgiapp.h>

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

    // Runs `request_threads` serving loops and `upload_threads` upload loops until stop(), with
    // one handler each from `make_handler`. Fails with config when a handler cannot be made
    // (e.g. the magic database is missing).
    Result<> run(unsigned request_threads, unsigned upload_threads,
                 const std::function<Result<std::unique_ptr<ThreadHandler>>()>& make_handler);

    // Thread-safe (called from the signal-handling thread). No new request is read; requests in
    // progress and uploads already handed over complete, and their connections close. Idle
    // pooled connections close at once and a socket path of its own is removed, so nginx answers
    // requests that come meanwhile with 503 instead of leaving them waiting for the exit. (A
    // socket from systemd stays open: its connections wait for the next kiln-api.)
    void stop();

  private:
    FcgiServer(int fd, std::string owned_path, util::UniqueFd epoll_fd, util::UniqueFd stop_fd);
    struct AcceptedRequest;
    void serve_loop(ThreadHandler& handler);
    void upload_loop(ThreadHandler& handler);
    // Handles an accepted request, answers it and gives its connection back to the epoll set
    // (or closes it).
    void serve(FCGX_Request& req, Request& request, ThreadHandler& handler);
    // A connected socket with a request to read, or -1 once stop() was called.
    int next_connection();
    // Takes every connection waiting on the listening socket into the epoll set.
    void accept_pending();
    // Waits for the next request on `fd` in the epoll set (re-armed when `registered`), as an
    // idle connection that stop() closes. False when it cannot, or stop() was called: the
    // caller closes it.
    bool watch_idle(int fd, bool registered);
    int listen_fd_;
    std::string owned_path_;  // removed on destruction when we created it
    util::UniqueFd epoll_fd_;
    util::UniqueFd stop_fd_;  // an eventfd, set by stop()
    std::atomic<bool> stopping_{false};
    std::atomic<bool> path_removed_{false};  // by stop()

    // Connections waiting in the epoll set for their next request.
    std::mutex idle_mutex_;
    std::unordered_set<int> idle_;

    // Requests with a body, from their hand-over to the end of their answer.
    util::WorkQueue<std::unique_ptr<AcceptedRequest>> uploads_;
    std::size_t max_admitted_uploads_ = 0;
};

}  // namespace kiln::http
