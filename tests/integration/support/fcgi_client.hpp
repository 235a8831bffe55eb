#pragma once
// A FastCGI client on one connection, speaking the records nginx sends (FCGI_BEGIN_REQUEST with
// or without FCGI_KEEP_CONN, PARAMS, STDIN), so tests can hold connections open the way nginx's
// upstream pool does. cgi-fcgi (fcgi_request) opens one connection per request and cannot.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kiln::test {

struct FcgiReply {
    std::string stdout_data;  // CGI headers ("Status: 404 ...") and body
    bool ended = false;       // FCGI_END_REQUEST arrived
};

class FcgiConnection {
  public:
    // Connects to the unix socket; throws when it cannot.
    explicit FcgiConnection(const std::filesystem::path& socket);
    ~FcgiConnection();
    FcgiConnection(const FcgiConnection&) = delete;
    FcgiConnection& operator=(const FcgiConnection&) = delete;

    // Sends one request: the params, then `body` as stdin (declared as `content_length` bytes,
    // which may be more than is sent) and the end-of-stdin record when the whole body was sent.
    void send(const std::vector<std::pair<std::string, std::string>>& params,
              const std::string& body = "", std::optional<std::size_t> content_length = {},
              bool keep_connection = true);

    // More of the body as stdin records, then the end-of-stdin record when `last`.
    void send_body(const std::string& data, bool last);

    // Reads records until FCGI_END_REQUEST or `timeout`; ended is false on a timeout or when
    // the server closed the connection first.
    FcgiReply receive(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // True when the server closes the connection (reads EOF) within `timeout`.
    bool closed_by_server(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  private:
    void write_record(unsigned char type, const std::string& content);
    bool read_exact(char* out, std::size_t size, std::chrono::steady_clock::time_point deadline);
    int fd_ = -1;
};

// The params nginx sends for `method` on `path`, with the bearer `token` when not empty.
std::vector<std::pair<std::string, std::string>> fcgi_params(const std::string& method,
                                                             const std::string& path,
                                                             const std::string& token = "");

}  // namespace kiln::test
