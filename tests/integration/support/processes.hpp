#pragma once
// Starting extra kiln processes from a test: started with an argument vector, output to a log
// file, and stopped by the guard (TERM, then KILL after a timeout) when it goes out of scope.

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/support/stack.hpp"

namespace kiln::test {

class SpawnedProcess {
  public:
    SpawnedProcess(const std::vector<std::string>& argv, const std::filesystem::path& log,
                   const EnvOverrides& env = {});
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

// A second kiln-api with the stack's config and `env` (e.g. KILN_DB, KILN_STORAGE), listening on
// `socket`; returns once the socket exists (the caller checks that it does: after 5 s it returns
// anyway). Spoken to over FastCGI directly with fcgi_request, so the stack's nginx never sees it.
std::unique_ptr<SpawnedProcess> start_private_api(const EnvOverrides& env,
                                                  const std::filesystem::path& socket,
                                                  const std::string& log_name);

// One request to the FastCGI `socket` with cgi-fcgi: the raw response (CGI headers such as
// "Status: 507", then the body). A non-empty `body` is sent with `content_type`. Throws when
// cgi-fcgi fails.
std::string fcgi_request(const std::filesystem::path& socket, const std::string& method,
                         const std::string& path, const std::string& token,
                         const std::string& body = "", const std::string& content_type = "");

}  // namespace kiln::test
