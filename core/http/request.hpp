#pragma once
// A request as handlers see it: copied out of the FastCGI parameters (which die with the
// request), with the body left unread behind a reader so uploads can be streamed.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace kiln::http {

class BodyReader {
  public:
    virtual ~BodyReader() = default;
    // Up to `size` bytes; 0 at the end of the body, when the client went away (the caller
    // compares what it got with Content-Length, or asks complete() for a chunked body), or
    // when the body arrives too slowly (too_slow()).
    virtual std::size_t read(char* buffer, std::size_t size) = 0;
    // After read() returned 0: true when the body's end arrived, false when the stream broke
    // off (the client went away mid-upload) or was too slow.
    [[nodiscard]] virtual bool complete() const = 0;
    // After read() returned 0: the body was given up because it came slower than BodyPace allows.
    [[nodiscard]] virtual bool too_slow() const { return false; }
};

// How slowly a body may arrive: at least `min_bytes` in every `window` while it is read. An
// upload holds a thread until its last byte, so a client trickling a few bytes now and then
// (under nginx's idle timeout) would otherwise hold it for as long as it likes.
class BodyPace {
  public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::seconds default_window{30};
    static constexpr std::uint64_t default_min_bytes = 32 * 1024;

    explicit BodyPace(Clock::time_point start, std::chrono::seconds window = default_window,
                      std::uint64_t min_bytes = default_min_bytes)
        : window_(window), min_bytes_(min_bytes), window_start_(start) {}
    // Counts `bytes` read at `now`; false once a whole window went by with fewer than min_bytes.
    bool on_read(std::uint64_t bytes, Clock::time_point now);

  private:
    std::chrono::seconds window_;
    std::uint64_t min_bytes_;
    Clock::time_point window_start_;
    std::uint64_t bytes_in_window_ = 0;
};

struct Request {
    std::string method;
    std::string path;  // decoded by nginx ($document_uri), no query string
    std::string query_string;
    std::string content_type;
    std::optional<std::uint64_t> content_length;  // nullopt when absent
    // Transfer-Encoding: chunked, without a length: nginx streams such a body to kiln-api
    // (fastcgi_request_buffering off) and its size is known only at its end.
    bool chunked = false;
    std::string authorization;
    std::optional<std::string> idempotency_key;  // nullopt when the header is absent
    // A header kiln-api reads that the request gave more than once ("" if none): its answer is
    // 400, as a proxy in front could read the other value.
    std::string repeated_header;
    BodyReader* body = nullptr;
};

// Query string parameters, percent-decoded (cgicc's decoder). A repeated name keeps the first.
// Fails with invalid_request when the query string is longer than 4 KiB.
Result<std::map<std::string, std::string>> parse_query(std::string_view query);

// Checks that the request has a body whose size is known (Content-Length) or will be (chunked);
// fails with length_required otherwise, and with payload_too_large when its Content-Length is
// above `limit`.
Result<> check_body_length(const Request& request, std::uint64_t limit);

// Reads the whole body in chunks through `consume`, at most `limit` bytes (payload_too_large
// beyond, checked as it arrives for a chunked body). Fails with invalid_request when the body
// ends before its Content-Length or breaks off (the client went away).
Result<> read_body(Request& request, std::uint64_t limit, char* buffer, std::size_t buffer_size,
                   const std::function<Result<>(std::string_view)>& consume);

// Reads a whole small body (JSON) of at most `limit` bytes, with read_body's errors.
Result<std::string> read_small_body(Request& request, std::size_t limit);

}  // namespace kiln::http
