#pragma once
// Streaming multipart/form-data parser (RFC 7578 / RFC 2046). The body is fed in chunks of any
// size as it arrives; part data is handed on without buffering a whole part, so memory stays
// bounded by the limits below whatever the upload size.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace kiln::http {

struct MultipartLimits {
    std::size_t max_parts = 64;                // more parts: payload_too_large
    std::size_t max_part_header_bytes = 8192;  // one part's header block: payload_too_large
    std::size_t max_headers_per_part = 16;     // more header lines: invalid_request
};

struct PartHeaders {
    std::string name;                     // form field name from Content-Disposition
    std::optional<std::string> filename;  // raw, unsanitised; present for file parts
    std::string content_type;             // as declared by the client (not trusted), may be empty
};

// Receives the parsed parts. Returning an error from a callback stops the parse and the same
// error is returned from feed()/finish().
class MultipartHandler {
  public:
    virtual ~MultipartHandler() = default;
    virtual Result<> on_part_begin(const PartHeaders& headers) = 0;
    virtual Result<> on_part_data(std::string_view data) = 0;  // zero or more calls per part
    virtual Result<> on_part_end() = 0;
};

class MultipartParser final {
  public:
    MultipartParser(std::string boundary, MultipartLimits limits, MultipartHandler& handler);

    // Fails with invalid_request on malformed input (bad delimiter, header without colon,
    // part without Content-Disposition form-data name) and payload_too_large on a limit.
    // Strict about line ends: part header lines and delimiter lines must end in CRLF.
    // After an error every later call returns the same error.
    [[nodiscard]] Result<> feed(std::string_view chunk);

    // Fails with invalid_request when the body ended before the closing delimiter.
    [[nodiscard]] Result<> finish();

    [[nodiscard]] std::size_t parts_seen() const { return parts_seen_; }

  private:
    enum class State : unsigned char {
        preamble,        // before the first delimiter; discarded
        after_boundary,  // "--boundary" matched; "--", padding or CRLF must follow
        closing_dash,    // "--boundary-" matched; the second '-' must follow
        padding,         // transport padding (SP/HT) before the delimiter's CRLF
        delimiter_lf,    // CR after the delimiter seen; LF must follow
        headers,         // inside a part's header block
        data,            // inside a part's body
        epilogue,        // after "--boundary--"; discarded
    };

    Result<> consume(std::string_view& rest);
    Result<> scan_for_delimiter(std::string_view& rest);
    Result<> emit(std::string_view bytes);
    Result<> consume_delimiter_tail(std::string_view& rest);
    Result<> begin_part();
    Result<> end_part();
    Result<> consume_headers(std::string_view& rest);
    Result<> header_line(std::string_view line);
    Result<> end_of_headers();
    Result<> record(Result<> result);

    std::string delimiter_;  // CRLF "--" boundary
    MultipartLimits limits_;
    MultipartHandler& handler_;
    std::optional<Error> error_;
    State state_ = State::preamble;
    // Bytes of delimiter_ matched at the end of the last chunk, held back from the part data.
    // Starts at 2: the body is read as if preceded by CRLF, so a delimiter may open the body.
    std::size_t matched_ = 2;
    std::size_t preamble_bytes_ = 0;
    std::size_t parts_seen_ = 0;
    bool part_open_ = false;  // on_part_begin delivered, on_part_end not yet
    // The header block being read.
    PartHeaders current_;
    std::string header_line_;
    std::size_t header_bytes_ = 0;
    std::size_t header_lines_ = 0;
    bool disposition_seen_ = false;
    bool content_type_seen_ = false;
};

// The media type of a Content-Type value without its parameters, trimmed and lowercased (media
// types are case-insensitive): "application/json" for "Application/JSON; charset=utf-8".
std::string media_type(std::string_view content_type);
// The value of its charset parameter, lowercased and unquoted; empty when there is none or the
// parameters do not parse.
std::string charset_of(std::string_view content_type);

// The boundary parameter of a multipart/form-data Content-Type (quoted or not), or nullopt when
// the type is not multipart/form-data or the boundary is missing, empty or longer than 70 chars.
std::optional<std::string> multipart_boundary(std::string_view content_type);

}  // namespace kiln::http
