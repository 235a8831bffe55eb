#include "core/http/fcgi_server.hpp"

#include <fcgiapp.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/log.hpp"
#include "core/util/systemd.hpp"

namespace kiln::http {
namespace {

std::string param(FCGX_Request& req, const char* name) {
    const char* v = FCGX_GetParam(name, req.envp);
    return v != nullptr ? std::string(v) : std::string();
}

std::optional<std::string> optional_param(FCGX_Request& req, const char* name) {
    const char* v = FCGX_GetParam(name, req.envp);
    return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
}

// Headers kiln-api reads that a request may give only once (nginx itself refuses a second
// Authorization, Content-Length or Transfer-Encoding). nginx 1.22 passes a repeated header on
// as a second parameter of the same name, of which libfcgi's lookup returns the first. (nginx
// 1.23 and later join them into one, "a, b": a key with a space is refused anyway, and that
// Content-Type is not one kiln-api accepts.)
struct SingleHeader {
    std::string_view param;  // with the '=' that ends the name
    std::string_view name;
};
constexpr SingleHeader single_headers[] = {{"HTTP_IDEMPOTENCY_KEY=", "Idempotency-Key"},
                                           {"HTTP_CONTENT_TYPE=", "Content-Type"}};

std::string first_repeated_header(FCGX_Request& req) {
    for (const auto& header : single_headers) {
        int seen = 0;
        for (char** p = req.envp; p != nullptr && *p != nullptr; ++p) {
            if (std::string_view(*p).starts_with(header.param) && ++seen > 1) {
                return std::string(header.name);
            }
        }
    }
    return {};
}

// How much to ask libfcgi for, at most `cap`, so that the call makes at most one read(2): what
// it holds already, else one byte, which waits for the next stdin record.
std::size_t one_read_worth(const FCGX_Stream* in, std::size_t cap) {
    const auto held = static_cast<std::size_t>(in->stop - in->rdNext);
    return std::min(cap, std::max<std::size_t>(held, 1));
}

class FcgiBodyReader final : public BodyReader {
  public:
    explicit FcgiBodyReader(FCGX_Stream* in) : in_(in), pace_(BodyPace::Clock::now()) {}
    std::size_t read(char* buffer, std::size_t size) override {
        std::size_t got = 0;
        while (got < size && !too_slow_) {
            // Taken record by record, the body's pace is checked as it arrives, not once a whole
            // buffer has come (a trickle would never fill one).
            const std::size_t want =
                one_read_worth(in_, std::min(size - got, std::size_t{1} << 30));
            const int n = FCGX_GetStr(buffer + got, static_cast<int>(want), in_);
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
            too_slow_ = !pace_.on_read(static_cast<std::uint64_t>(n), BodyPace::Clock::now());
        }
        consumed_ += got;
        return got;
    }
    // libfcgi closes the stream both at the empty stdin record that ends the body and when the
    // connection breaks; only the first leaves no error.
    bool complete() const override {
        return !too_slow_ && FCGX_HasSeenEOF(in_) == EOF && FCGX_GetError(in_) == 0;
    }
    bool too_slow() const override { return too_slow_; }
    std::uint64_t consumed() const { return consumed_; }

  private:
    FCGX_Stream* in_;
    BodyPace pace_;
    bool too_slow_ = false;
    std::uint64_t consumed_ = 0;
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
    r.idempotency_key = optional_param(req, "HTTP_IDEMPOTENCY_KEY");
    r.repeated_header = first_repeated_header(req);
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

bool set_receive_timeout(int fd, std::chrono::microseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000000);
    return ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0;
}

// Reads and drops the rest of a body that the handler refused before reading it all, up to the
// empty record that ends it: at most `max_bytes`, and only what arrives within `patience`.
// Each call to libfcgi makes at most one read(2) (one_read_worth), which the receive timeout
// bounds by the time left: a rest still on its way, or
// trickled in byte by byte, does not hold this thread (libfcgi then fails the stream and the
// connection is closed).
bool discard_rest_of_body(FCGX_Request& req, std::uint64_t max_bytes,
                          std::chrono::milliseconds patience) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + patience;
    char buffer[16384];
    std::uint64_t dropped = 0;
    bool ended = false;
    while (!ended) {
        const auto left =
            std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
        if (left.count() <= 0 || !set_receive_timeout(req.ipcFd, left)) return false;
        const int n =
            FCGX_GetStr(buffer, static_cast<int>(one_read_worth(req.in, sizeof buffer)), req.in);
        if (n <= 0) {
            ended = true;
        } else if ((dropped += static_cast<std::uint64_t>(n)) > max_bytes) {
            return false;
        }
    }
    // Back to blocking reads for the next request's body.
    return FCGX_HasSeenEOF(req.in) == EOF && FCGX_GetError(req.in) == 0 &&
           set_receive_timeout(req.ipcFd, std::chrono::microseconds{0});
}

// A connection may carry the next request only when this one's stdin was read to its end
// record: bytes left unread would be taken for the next request's records. nginx pools a
// connection once it has sent the whole body, whatever kiln-api read of it, and the next
// request on a connection kiln-api closed fails (a POST is not retried: its client gets 503).
// So the rest of a refused body is read and dropped when it is small and already there (a 401
// before a small upload's body is read); a large one (a 413 for 2 GB) is not drained: the
// connection is closed, and nginx, which has not sent that whole body, does not pool it.
bool ready_for_next_request(FCGX_Request& req, const Request& request, const FcgiBodyReader& body) {
    constexpr std::uint64_t max_rest = std::uint64_t{1} << 20;
    constexpr auto patience = std::chrono::milliseconds(100);
    if (req.keepConnection == 0 || body.too_slow()) return false;
    if (body.complete()) return true;  // the body, chunked or not, was read to its end record
    // A request with neither Content-Length nor a chunked body has none.
    const std::uint64_t declared = request.content_length.value_or(0);
    if (!request.chunked && body.consumed() == declared) {
        // All of it was read: what follows is the empty record that ends it, which nginx sends
        // right after the body's last bytes.
        char probe;
        return FCGX_GetStr(&probe, 1, req.in) == 0 && body.complete();
    }
    if (!request.chunked && (body.consumed() > declared || declared - body.consumed() > max_rest)) {
        return false;
    }
    // The response is complete: let nginx pass it on while the rest of the body is read.
    FCGX_FFlush(req.out);
    return discard_rest_of_body(req, max_rest, patience);
}

constexpr std::uint32_t watch_flags = EPOLLIN | EPOLLONESHOT;

// Whether a process accepts connections on the unix socket at `path`: another kiln-api
// started with the same config, whose socket must not be taken over.
bool someone_listens(const std::string& path) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) return false;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    util::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return false;
    return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

// One-shot: the first event disarms the descriptor, so exactly one thread reads each request.
// A connection seen before is re-armed (MOD), a new one registered (ADD).
bool watch(int epoll_fd, int fd, bool registered) {
    epoll_event ev{};
    ev.events = watch_flags;
    ev.data.fd = fd;
    return ::epoll_ctl(epoll_fd, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0;
}

}  // namespace

Result<std::unique_ptr<FcgiServer>> FcgiServer::open(const std::string& socket_path) {
    if (FCGX_Init() != 0) return fail(ErrorCode::internal, "FCGX_Init failed");
    int fd = -1;
    std::string owned_path;
    if (auto inherited = util::inherited_socket()) {
        fd = *inherited;
    } else {
        // A socket file left by a crashed instance would make bind() fail; one that a running
        // instance listens on is its, and is left alone.
        struct stat st {};
        if (::lstat(socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
            if (someone_listens(socket_path)) {
                return fail(ErrorCode::config, "another process listens on " + socket_path +
                                                   " (is kiln-api running already?)");
            }
            ::unlink(socket_path.c_str());
        }
        const mode_t old_mask = ::umask(0117);  // socket mode 0660: nginx reaches it via the group
        fd = FCGX_OpenSocket(socket_path.c_str(), 1024);
        ::umask(old_mask);
        if (fd < 0) return fail(ErrorCode::io, "FCGX_OpenSocket(" + socket_path + ") failed");
        owned_path = socket_path;
    }
    // Threads accept only after epoll reports a connection; another thread may have taken it.
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return fail(ErrorCode::io, std::string("listening socket: ") + std::strerror(errno));
    }
    util::UniqueFd epoll_fd(::epoll_create1(EPOLL_CLOEXEC));
    util::UniqueFd stop_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!epoll_fd.valid() || !stop_fd.valid()) {
        return fail(ErrorCode::io, std::string("epoll: ") + std::strerror(errno));
    }
    epoll_event listen_ev{};
    listen_ev.events = watch_flags;
    listen_ev.data.fd = fd;
    // The stop event is level-triggered and never read: once set, it wakes every thread.
    epoll_event stop_ev{};
    stop_ev.events = EPOLLIN;
    stop_ev.data.fd = stop_fd.get();
    if (::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, fd, &listen_ev) != 0 ||
        ::epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, stop_fd.get(), &stop_ev) != 0) {
        return fail(ErrorCode::io, std::string("epoll_ctl: ") + std::strerror(errno));
    }
    return std::unique_ptr<FcgiServer>(
        new FcgiServer(fd, std::move(owned_path), std::move(epoll_fd), std::move(stop_fd)));
}

FcgiServer::FcgiServer(int fd, std::string owned_path, util::UniqueFd epoll_fd,
                       util::UniqueFd stop_fd)
    : listen_fd_(fd),
      owned_path_(std::move(owned_path)),
      epoll_fd_(std::move(epoll_fd)),
      stop_fd_(std::move(stop_fd)) {}

FcgiServer::~FcgiServer() {
    if (!owned_path_.empty()) {
        ::close(listen_fd_);
        // Removed by stop() already, the path may be a newer kiln-api's by now.
        if (!path_removed_.load()) ::unlink(owned_path_.c_str());
    }
}

// A request whose params libfcgi has read: a request thread's current one, or an upload on its
// way to an upload thread.
struct FcgiServer::AcceptedRequest {
    AcceptedRequest() { FCGX_InitRequest(&req, -1, 0); }
    ~AcceptedRequest() { FCGX_Free(&req, 1); }
    AcceptedRequest(const AcceptedRequest&) = delete;
    AcceptedRequest& operator=(const AcceptedRequest&) = delete;
    FCGX_Request req;
    Request request;
};

Result<> FcgiServer::run(
    unsigned request_threads, unsigned upload_threads,
    const std::function<Result<std::unique_ptr<ThreadHandler>>()>& make_handler) {
    // Handlers are made up front so a broken set-up fails start-up instead of one thread.
    std::vector<std::unique_ptr<ThreadHandler>> handlers;
    for (unsigned i = 0; i < request_threads + upload_threads; ++i) {
        auto h = make_handler();
        if (!h) return std::unexpected(h.error());
        handlers.push_back(std::move(*h));
    }
    // Uploads waiting for a thread hold a connection and their buffers each (and nginx holds
    // their clients): up to 8 waiting per upload thread, beyond which an upload is answered 503
    // at once.
    max_admitted_uploads_ = 9 * std::size_t{upload_threads};
    std::vector<std::thread> requests;
    std::vector<std::thread> uploads;
    for (unsigned i = 0; i < request_threads; ++i) {
        requests.emplace_back([this, &h = *handlers[i]] { serve_loop(h); });
    }
    for (unsigned i = request_threads; i < handlers.size(); ++i) {
        uploads.emplace_back([this, &h = *handlers[i]] { upload_loop(h); });
    }
    for (auto& t : requests) t.join();
    // No upload will be handed over any more; those already handed over are still served.
    uploads_.close();
    for (auto& t : uploads) t.join();
    return {};
}

int FcgiServer::next_connection() {
    while (true) {
        epoll_event ev{};
        const int n = ::epoll_wait(epoll_fd_.get(), &ev, 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || ev.data.fd == stop_fd_.get()) return -1;
        if (ev.data.fd != listen_fd_) {  // a connection with a request
            std::unique_lock lock(idle_mutex_);
            if (idle_.erase(ev.data.fd) == 1) return ev.data.fd;
            // stop() shut it down meanwhile: a request on it is not served (nginx answers 503),
            // so nothing is done for a client that gets no answer.
            lock.unlock();
            ::close(ev.data.fd);
            continue;
        }
        accept_pending();
    }
}

void FcgiServer::accept_pending() {
    // Every waiting connection joins the epoll set and queues behind the requests already
    // ready there: serving one connection per listen event would leave the others in the
    // backlog for many rounds (high tail latency whenever nginx opens connections beyond its pool).
    int accept_errno = 0;
    for (int i = 0; i < 256; ++i) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            accept_errno = errno;
            break;
        }
        if (!watch_idle(fd, false)) ::close(fd);
    }
    if (accept_errno == EMFILE || accept_errno == ENFILE) {
        // Out of descriptors: re-arming at once would spin. Back off a little.
        log::warning("accept failed", {{"error", std::strerror(accept_errno)}});
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // stop() takes the listening socket out of the set (re-arming it then fails).
    if (!watch(epoll_fd_.get(), listen_fd_, true) && !stopping_.load()) {
        log::error("cannot watch the listening socket: no new connection will be accepted",
                   {{"error", std::strerror(errno)}});
    }
}

void FcgiServer::serve_loop(ThreadHandler& handler) {
    // No listening socket for libfcgi: this loop accepts and hands it connections, so a failed
    // connection makes FCGX_Accept_r return instead of blocking in its own accept.
    auto current = std::make_unique<AcceptedRequest>();
    while (true) {
        const int fd = next_connection();
        if (fd < 0) break;
        FCGX_Request& req = current->req;
        // FCGX_Accept_r first finishes the previous request and, unless that one kept its
        // connection, closes req.ipcFd: mark it kept so the connection handed over survives.
        req.keepConnection = 1;
        req.ipcFd = fd;
        // Reads the request's begin record and params; on a closed or broken connection it
        // closes the descriptor and fails.
        if (FCGX_Accept_r(&req) < 0) continue;
        current->request = to_request(req);
        if (current->request.chunked || current->request.content_length.value_or(0) > 0) {
            // Counted until it is answered, so a burst is measured against the upload threads
            // plus the queue. The request moves as a whole: libfcgi's streams point back into
            // its FCGX_Request.
            if (uploads_.push(current, max_admitted_uploads_)) {
                current = std::make_unique<AcceptedRequest>();
                continue;
            }
            log::warning("upload refused: every upload thread is busy and the queue is full",
                         {{"uploads_admitted", max_admitted_uploads_}});
            Response busy = problem(Error{ErrorCode::unavailable, "too many uploads waiting", ""});
            write_response(req, busy);
            req.keepConnection = 0;  // its body is unread
            FCGX_Finish_r(&req);
            continue;
        }
        serve(req, current->request, handler);
    }
}

void FcgiServer::upload_loop(ThreadHandler& handler) {
    while (auto upload = uploads_.pop()) {
        serve((*upload)->req, (*upload)->request, handler);
        uploads_.done();
    }
}

void FcgiServer::serve(FCGX_Request& req, Request& request, ThreadHandler& handler) {
    FcgiBodyReader body(req.in);
    request.body = &body;
    Response response = handler.handle(request);
    write_response(req, response);
    const bool keep = !stopping_.load() && ready_for_next_request(req, request, body);
    if (!keep) req.keepConnection = 0;
    FCGX_Finish_r(&req);
    if (req.ipcFd >= 0) {
        // nginx pools the connection (fastcgi_keep_conn): its next request is waited for in the
        // epoll set, not by blocking this thread on it.
        if (!watch_idle(req.ipcFd, true)) ::close(req.ipcFd);
        req.ipcFd = -1;
    }
}

bool FcgiServer::watch_idle(int fd, bool registered) {
    std::lock_guard lock(idle_mutex_);
    if (stopping_.load()) return false;
    // Listed before it is armed: once armed, another thread may take it at once.
    idle_.insert(fd);
    if (watch(epoll_fd_.get(), fd, registered)) return true;
    idle_.erase(fd);
    return false;
}

void FcgiServer::stop() {
    stopping_.store(true);
    // First no new connection: they now fail at once (nginx answers 503 with Retry-After), and
    // those already waiting to be accepted are closed rather than left until the exit.
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, listen_fd_, nullptr);
    if (!owned_path_.empty()) {
        ::unlink(owned_path_.c_str());
        path_removed_.store(true);
        for (int fd; (fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
            ::close(fd);
        }
    }
    {
        // Then the idle pooled ones (watch_idle adds none once stopping_ is set). Shut down, not
        // closed: a thread may have just taken one from epoll (it then reads EOF and closes
        // it), and a closed number could be reused under it.
        std::lock_guard lock(idle_mutex_);
        for (int fd : idle_) ::shutdown(fd, SHUT_RDWR);
        idle_.clear();
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
}

}  // namespace kiln::http
