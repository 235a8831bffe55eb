#pragma once
// The FastCGI side of kiln-api: a listening socket (a unix socket path, or the one systemd
// passes), and a pool of threads each accepting with its own FCGX_Request. This is the only file
// pair that includes <fcgiapp.h>.

#include <functional>
#include <memory>
#include <string>

#include "core/http/request.hpp"
#include "core/http/response.hpp"
#include "core/result.hpp"

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

    // Runs `threads` accept loops until stop(); each thread calls `make_handler` first.
    // Fails with config when a handler cannot be made (e.g. the magic database is missing).
    Result<> run(unsigned threads,
                 const std::function<Result<std::unique_ptr<ThreadHandler>>()>& make_handler);

    // Async-signal-unsafe but thread-safe: called from the signal-handling thread. Requests in
    // progress complete; no new ones are accepted.
    void stop();

  private:
    explicit FcgiServer(int fd, std::string owned_path)
        : listen_fd_(fd), owned_path_(std::move(owned_path)) {}
    void accept_loop(ThreadHandler& handler);
    int listen_fd_;
    std::string owned_path_;  // removed on destruction when we created it
};

}  // namespace kiln::http
