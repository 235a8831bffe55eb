#pragma once
// A request as handlers see it: copied out of the FastCGI parameters (which die with the
// request), with the body left unread behind a reader so uploads can be streamed.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace kiln::http {

class BodyReader {
  public:
    virtual ~BodyReader() = default;
    // Up to `size` bytes; 0 at the end of the body or when the client went away (the caller
    // compares what it got with Content-Length).
    virtual std::size_t read(char* buffer, std::size_t size) = 0;
};

struct Request {
    std::string method;
    std::string path;  // decoded by nginx ($document_uri), no query string
    std::string query_string;
    std::string content_type;
    std::optional<std::uint64_t> content_length;  // nullopt when absent
    bool chunked = false;                         // Transfer-Encoding without a length
    std::string authorization;
    std::string idempotency_key;
    BodyReader* body = nullptr;
};

// Query string parameters, percent-decoded (cgicc's decoder). A repeated name keeps the first.
// Fails with invalid_request when the query string is longer than 4 KiB.
Result<std::map<std::string, std::string>> parse_query(std::string_view query);

// Reads a whole small body (JSON) of at most `limit` bytes. Fails with payload_too_large above
// the limit and invalid_request when the body is shorter than its Content-Length.
Result<std::string> read_small_body(Request& request, std::size_t limit);

}  // namespace kiln::http
