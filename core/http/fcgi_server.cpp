#include "core/http/fcgi_server.hpp"

#include <fcgiapp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "core/util/systemd.hpp"

namespace kiln::http {
namespace {

// libfcgi's accept is not safe to call concurrently on one socket (upstream's threaded example
// serialises it the same way).
std::mutex accept_mutex;

std::string param(FCGX_Request& req, const char* name) {
    const char* v = FCGX_GetParam(name, req.envp);
    return v != nullptr ? std::string(v) : std::string();
}

class FcgiBodyReader final : public BodyReader {
  public:
    explicit FcgiBodyReader(FCGX_Stream* in) : in_(in) {}
    std::size_t read(char* buffer, std::size_t size) override {
        int n = FCGX_GetStr(buffer, static_cast<int>(std::min<std::size_t>(size, 1 << 30)), in_);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }

  private:
    FCGX_Stream* in_;
};

Request to_request(FCGX_Request& req) {
    Request r;
    r.method = param(req, "REQUEST_METHOD");
    r.path = param(req, "DOCUMENT_URI");
    if (r.path.empty()) {
        r.path = param(req, "REQUEST_URI");
        if (auto q = r.path.find('?'); q != std::string::npos) r.path.resize(q);
    }
    r.query_string = param(req, "QUERY_STRING");
    r.content_type = param(req, "CONTENT_TYPE");
    const std::string length = param(req, "CONTENT_LENGTH");
    if (!length.empty()) {
        std::uint64_t n = 0;
        auto [ptr, ec] = std::from_chars(length.data(), length.data() + length.size(), n);
        if (ec == std::errc() && ptr == length.data() + length.size()) r.content_length = n;
    }
    r.chunked = !param(req, "HTTP_TRANSFER_ENCODING").empty();
    r.authorization = param(req, "HTTP_AUTHORIZATION");
    r.idempotency_key = param(req, "HTTP_IDEMPOTENCY_KEY");
    return r;
}

bool safe_header_text(std::string_view s) {
    return s.find_first_of("\r\n") == std::string_view::npos;
}

void write_response(FCGX_Request& req, const Response& response) {
    std::string head = "Status: " + std::to_string(response.status) + " " +
                       std::string(reason_phrase(response.status)) + "\r\n";
    for (const auto& [name, value] : response.headers) {
        if (!safe_header_text(name) || !safe_header_text(value)) continue;
        head += name + ": " + value + "\r\n";
    }
    head += "Content-Length: " + std::to_string(response.body.size()) + "\r\n\r\n";
    FCGX_PutStr(head.data(), static_cast<int>(head.size()), req.out);
    if (!response.body.empty()) {
        FCGX_PutStr(response.body.data(), static_cast<int>(response.body.size()), req.out);
    }
}

}  // namespace

Result<std::unique_ptr<FcgiServer>> FcgiServer::open(const std::string& socket_path) {
    if (FCGX_Init() != 0) return fail(ErrorCode::internal, "FCGX_Init failed");
    if (auto fd = util::inherited_socket()) {
        return std::unique_ptr<FcgiServer>(new FcgiServer(*fd, ""));
    }
    // A socket file left by a crashed instance would make bind() fail.
    struct stat st {};
    if (::lstat(socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        ::unlink(socket_path.c_str());
    }
    const mode_t old_mask = ::umask(0117);  // socket mode 0660: nginx reaches it via the group
    int fd = FCGX_OpenSocket(socket_path.c_str(), 1024);
    ::umask(old_mask);
    if (fd < 0) return fail(ErrorCode::io, "FCGX_OpenSocket(" + socket_path + ") failed");
    return std::unique_ptr<FcgiServer>(new FcgiServer(fd, socket_path));
}

FcgiServer::~FcgiServer() {
    if (!owned_path_.empty()) {
        ::close(listen_fd_);
        ::unlink(owned_path_.c_str());
    }
}

Result<> FcgiServer::run(
    unsigned threads, const std::function<Result<std::unique_ptr<ThreadHandler>>()>& make_handler) {
    // Handlers are made up front so a broken set-up fails start-up instead of one thread.
    std::vector<std::unique_ptr<ThreadHandler>> handlers;
    for (unsigned i = 0; i < threads; ++i) {
        auto h = make_handler();
        if (!h) return std::unexpected(h.error());
        handlers.push_back(std::move(*h));
    }
    std::vector<std::thread> pool;
    for (auto& h : handlers) pool.emplace_back([this, &h] { accept_loop(*h); });
    for (auto& t : pool) t.join();
    return {};
}

void FcgiServer::accept_loop(ThreadHandler& handler) {
    FCGX_Request req;
    FCGX_InitRequest(&req, listen_fd_, FCGI_FAIL_ACCEPT_ON_INTR);
    while (true) {
        int rc;
        {
            std::lock_guard lock(accept_mutex);
            rc = FCGX_Accept_r(&req);
        }
        if (rc < 0) break;  // the listening socket was shut down: stop
        Request request = to_request(req);
        FcgiBodyReader body(req.in);
        request.body = &body;
        Response response = handler.handle(request);
        write_response(req, response);
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 1);
}

void FcgiServer::stop() {
    FCGX_ShutdownPending();
    // shutdown(2) on a listening socket wakes every thread blocked in accept(2) with an error.
    ::shutdown(listen_fd_, SHUT_RDWR);
}

}  // namespace kiln::http
