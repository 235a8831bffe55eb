#include "core/http/multipart.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Design notes.
// - The delimiter is CRLF "--" boundary. A valid boundary holds no CR, so the delimiter's only CR
//   is its first byte, and no proper suffix of a partial match can itself start a match. A
//   partial match at the end of a chunk is therefore kept as a count (matched_) rather than as
//   bytes: if the next chunk does not complete it, the held-back bytes are a prefix of the
//   delimiter and go out as data, and scanning restarts at the next chunk's first byte.
// - Line endings are strict: part header lines must end in CRLF (a bare LF or a stray CR is
//   invalid_request), and so must the delimiter line. Lenient LF handling is where parsers in
//   front of and behind a proxy disagree about where a part ends.
// - "CRLF--boundary" followed by anything but "--", padding or CRLF is invalid_request: RFC 2046
//   forbids the delimiter inside a part, so such a body is malformed rather than data.
//   "--boundary" not preceded by CRLF, or CRLF "--" plus a boundary prefix, is data.

namespace kiln::http {

namespace {

// A preamble is normally empty; a long one means the boundary does not match the body.
constexpr std::size_t max_preamble_bytes = 64 * 1024;
constexpr std::size_t max_boundary_bytes = 70;

bool is_space_or_tab(char c) { return c == ' ' || c == '\t'; }

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    return std::ranges::equal(a, b,
                              [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim_left(std::string_view s) {
    while (!s.empty() && is_space_or_tab(s.front())) s.remove_prefix(1);
    return s;
}

std::string_view trim(std::string_view s) {
    s = trim_left(s);
    while (!s.empty() && is_space_or_tab(s.back())) s.remove_suffix(1);
    return s;
}

// RFC 2046 allows at most 70 characters, from a set that excludes CR and LF (the parser relies
// on that). Any printable ASCII is accepted here, as long as it does not end in a space.
bool valid_boundary(std::string_view boundary) {
    if (boundary.empty() || boundary.size() > max_boundary_bytes) return false;
    if (boundary.back() == ' ') return false;
    return std::ranges::all_of(boundary, [](char c) { return c >= 0x20 && c <= 0x7e; });
}

struct Parameter {
    std::string_view name;
    std::string value;
};

// Parses `*( OWS ";" OWS name "=" ( token / quoted-string ) )` as in Content-Type and
// Content-Disposition. Inside quoted strings only \" and \\ are escapes: browsers do not escape
// backslashes, and old ones send Windows paths ("C:\dir\a.txt") that must come through intact.
// nullopt on a syntax error.
std::optional<std::vector<Parameter>> parse_parameters(std::string_view s) {
    std::vector<Parameter> params;
    for (;;) {
        s = trim_left(s);
        if (s.empty()) break;
        if (s.front() != ';') return std::nullopt;
        s = trim_left(s.substr(1));
        if (s.empty() || s.front() == ';') continue;

        const std::size_t name_end = std::min(s.find_first_of("=; \t"), s.size());
        Parameter param{.name = s.substr(0, name_end), .value = {}};
        if (param.name.empty()) return std::nullopt;
        s = trim_left(s.substr(name_end));
        if (s.empty() || s.front() != '=') return std::nullopt;
        s = trim_left(s.substr(1));

        if (!s.empty() && s.front() == '"') {
            s.remove_prefix(1);
            for (;;) {
                const std::size_t special = s.find_first_of("\"\\");
                if (special == std::string_view::npos) return std::nullopt;  // unterminated
                param.value.append(s.substr(0, special));
                if (s[special] == '"') {
                    s.remove_prefix(special + 1);
                    break;
                }
                const bool escape =
                    special + 1 < s.size() && (s[special + 1] == '"' || s[special + 1] == '\\');
                if (escape) {
                    param.value.push_back(s[special + 1]);
                    s.remove_prefix(special + 2);
                } else {
                    param.value.push_back('\\');
                    s.remove_prefix(special + 1);
                }
            }
        } else {
            const std::size_t value_end = std::min(s.find_first_of("; \t"), s.size());
            if (value_end == 0) return std::nullopt;
            param.value.assign(s.substr(0, value_end));
            s.remove_prefix(value_end);
        }
        params.push_back(std::move(param));
    }
    return params;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// RFC 8187 ext-value: charset "'" [language] "'" percent-encoded bytes. Only UTF-8 (the one
// charset recipients must support) is decoded; other charsets give nullopt and are ignored.
Result<std::optional<std::string>> decode_ext_value(std::string_view value) {
    const std::size_t charset_end = value.find('\'');
    const std::size_t language_end =
        charset_end == std::string_view::npos ? charset_end : value.find('\'', charset_end + 1);
    if (language_end == std::string_view::npos) {
        return fail(ErrorCode::invalid_request, "multipart: malformed filename* parameter");
    }
    if (!iequals(value.substr(0, charset_end), "utf-8")) return std::nullopt;

    std::string decoded;
    std::string_view encoded = value.substr(language_end + 1);
    decoded.reserve(encoded.size());
    while (!encoded.empty()) {
        if (encoded.front() != '%') {
            decoded.push_back(encoded.front());
            encoded.remove_prefix(1);
            continue;
        }
        const int high = encoded.size() >= 3 ? hex_value(encoded[1]) : -1;
        const int low = encoded.size() >= 3 ? hex_value(encoded[2]) : -1;
        if (high < 0 || low < 0) {
            return fail(ErrorCode::invalid_request, "multipart: malformed filename* parameter");
        }
        decoded.push_back(static_cast<char>(high * 16 + low));
        encoded.remove_prefix(3);
    }
    return decoded;
}

// Content-Disposition: form-data; name="..."; filename="..."; filename*=UTF-8''...
Result<> parse_content_disposition(std::string_view value, PartHeaders& headers) {
    const std::size_t type_end = std::min(value.find(';'), value.size());
    if (!iequals(trim(value.substr(0, type_end)), "form-data")) {
        return fail(ErrorCode::invalid_request,
                    "multipart: part Content-Disposition is not form-data");
    }
    auto params = parse_parameters(value.substr(type_end));
    if (!params) {
        return fail(ErrorCode::invalid_request,
                    "multipart: malformed Content-Disposition parameters");
    }

    std::optional<std::string> name;
    std::optional<std::string> filename;
    std::optional<std::string> filename_ext;
    for (Parameter& param : *params) {
        std::optional<std::string>* target = nullptr;
        if (iequals(param.name, "name")) {
            target = &name;
        } else if (iequals(param.name, "filename")) {
            target = &filename;
        } else if (iequals(param.name, "filename*")) {
            target = &filename_ext;
        } else {
            continue;
        }
        // Two names for one part would let two readers of the same body see different fields.
        if (target->has_value()) {
            return fail(
                ErrorCode::invalid_request,
                "multipart: duplicate Content-Disposition parameter " + std::string(param.name));
        }
        *target = std::move(param.value);
    }

    if (!name || name->empty()) {
        return fail(ErrorCode::invalid_request, "multipart: part has no form field name");
    }
    headers.name = std::move(*name);
    headers.filename = std::move(filename);
    if (filename_ext) {
        // RFC 7578 says clients must not send filename*, but where one does it is the better
        // rendering of the name (RFC 6266 4.3).
        auto decoded = decode_ext_value(*filename_ext);
        if (!decoded) return std::unexpected(std::move(decoded.error()));
        if (*decoded) headers.filename = std::move(**decoded);
    }
    return {};
}

}  // namespace

MultipartParser::MultipartParser(std::string boundary, MultipartLimits limits,
                                 MultipartHandler& handler)
    : delimiter_("\r\n--" + boundary), limits_(limits), handler_(handler) {
    if (!valid_boundary(boundary)) {
        error_ = Error{.code = ErrorCode::invalid_request,
                       .message = "multipart: invalid boundary",
                       .native = {}};
    }
}

Result<> MultipartParser::feed(std::string_view chunk) {
    if (error_) return std::unexpected(*error_);
    return record(consume(chunk));
}

Result<> MultipartParser::finish() {
    if (error_) return std::unexpected(*error_);
    if (state_ != State::epilogue) {
        return record(
            fail(ErrorCode::invalid_request, "multipart: body ended before the closing delimiter"));
    }
    return {};
}

Result<> MultipartParser::record(Result<> result) {
    if (!result) error_ = result.error();
    return result;
}

Result<> MultipartParser::consume(std::string_view& rest) {
    while (!rest.empty()) {
        Result<> step;
        switch (state_) {
            case State::preamble:
            case State::data:
                step = scan_for_delimiter(rest);
                break;
            case State::after_boundary:
            case State::closing_dash:
            case State::padding:
            case State::delimiter_lf:
                step = consume_delimiter_tail(rest);
                break;
            case State::headers:
                step = consume_headers(rest);
                break;
            case State::epilogue:
                rest = {};
                break;
        }
        if (!step) return step;
    }
    return {};
}

// Hands on everything before the next delimiter (or before a possible delimiter start at the end
// of the chunk) in one span, then consumes the delimiter itself.
Result<> MultipartParser::scan_for_delimiter(std::string_view& rest) {
    const std::string_view delimiter = delimiter_;
    if (matched_ > 0) {
        const std::size_t n = std::min(rest.size(), delimiter.size() - matched_);
        if (rest.substr(0, n) == delimiter.substr(matched_, n)) {
            matched_ += n;
            rest.remove_prefix(n);
            if (matched_ < delimiter.size()) return {};
            matched_ = 0;
            state_ = State::after_boundary;
            return {};
        }
        const std::size_t held = std::exchange(matched_, 0);
        if (auto r = emit(delimiter.substr(0, held)); !r) return r;
    }

    for (std::size_t pos = rest.find('\r'); pos != std::string_view::npos;
         pos = rest.find('\r', pos + 1)) {
        const std::size_t n = std::min(rest.size() - pos, delimiter.size());
        if (rest.substr(pos, n) != delimiter.substr(0, n)) continue;
        if (auto r = emit(rest.substr(0, pos)); !r) return r;
        rest.remove_prefix(pos + n);
        if (n < delimiter.size()) {
            matched_ = n;  // the chunk ends inside a possible delimiter
        } else {
            state_ = State::after_boundary;
        }
        return {};
    }
    auto r = emit(rest);
    rest = {};
    return r;
}

Result<> MultipartParser::emit(std::string_view bytes) {
    if (bytes.empty()) return {};
    if (state_ == State::data) return handler_.on_part_data(bytes);
    preamble_bytes_ += bytes.size();
    if (preamble_bytes_ > max_preamble_bytes) {
        return fail(ErrorCode::invalid_request, "multipart: no delimiter within the first " +
                                                    std::to_string(max_preamble_bytes) +
                                                    " bytes of the body");
    }
    return {};
}

// After "--boundary": "--" closes the body; otherwise optional SP/HT padding and CRLF open the
// next part. Only a handful of bytes, so byte by byte.
Result<> MultipartParser::consume_delimiter_tail(std::string_view& rest) {
    while (!rest.empty()) {
        const char c = rest.front();
        rest.remove_prefix(1);
        switch (state_) {
            case State::after_boundary:
            case State::padding:
                if (c == '-' && state_ == State::after_boundary) {
                    state_ = State::closing_dash;
                } else if (is_space_or_tab(c)) {
                    state_ = State::padding;
                } else if (c == '\r') {
                    state_ = State::delimiter_lf;
                } else {
                    return fail(ErrorCode::invalid_request,
                                "multipart: delimiter followed by unexpected bytes");
                }
                break;
            case State::closing_dash:
                if (c != '-') {
                    return fail(ErrorCode::invalid_request,
                                "multipart: delimiter followed by unexpected bytes");
                }
                state_ = State::epilogue;
                return end_part();
            case State::delimiter_lf:
                if (c != '\n') {
                    return fail(ErrorCode::invalid_request,
                                "multipart: delimiter line not terminated by CRLF");
                }
                if (auto r = end_part(); !r) return r;
                return begin_part();
            default:
                return fail(ErrorCode::internal, "multipart: unexpected parser state");
        }
    }
    return {};
}

Result<> MultipartParser::end_part() {
    if (!std::exchange(part_open_, false)) return {};
    return handler_.on_part_end();
}

Result<> MultipartParser::begin_part() {
    if (parts_seen_ >= limits_.max_parts) {
        return fail(ErrorCode::payload_too_large,
                    "multipart: more than " + std::to_string(limits_.max_parts) + " parts");
    }
    ++parts_seen_;
    state_ = State::headers;
    current_ = PartHeaders{};
    header_line_.clear();
    header_bytes_ = 0;
    header_lines_ = 0;
    disposition_seen_ = false;
    content_type_seen_ = false;
    return {};
}

// Collects one header line at a time; the limit applies before buffering, so a line without end
// costs at most max_part_header_bytes.
Result<> MultipartParser::consume_headers(std::string_view& rest) {
    const std::size_t newline = rest.find('\n');
    const std::size_t take = newline == std::string_view::npos ? rest.size() : newline + 1;
    if (take > limits_.max_part_header_bytes - header_bytes_) {  // header_bytes_ <= the limit
        return fail(ErrorCode::payload_too_large,
                    "multipart: part header block larger than " +
                        std::to_string(limits_.max_part_header_bytes) + " bytes");
    }
    header_bytes_ += take;
    header_line_.append(rest.substr(0, take));
    rest.remove_prefix(take);
    if (newline == std::string_view::npos) return {};

    std::string_view line = header_line_;
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
        return fail(ErrorCode::invalid_request,
                    "multipart: part header line not terminated by CRLF");
    }
    line.remove_suffix(2);
    Result<> result = line.empty() ? end_of_headers() : header_line(line);
    header_line_.clear();
    return result;
}

Result<> MultipartParser::header_line(std::string_view line) {
    if (++header_lines_ > limits_.max_headers_per_part) {
        return fail(ErrorCode::invalid_request, "multipart: more than " +
                                                    std::to_string(limits_.max_headers_per_part) +
                                                    " header lines in a part");
    }
    if (is_space_or_tab(line.front())) {
        return fail(ErrorCode::invalid_request, "multipart: obsolete line folding in part header");
    }
    // CR, LF and NUL in a field value are forbidden (RFC 9110 5.5); other controls never occur
    // in a legitimate part header.
    const bool has_control = std::ranges::any_of(line, [](char c) {
        return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
    });
    if (has_control) {
        return fail(ErrorCode::invalid_request, "multipart: control character in part header");
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
        return fail(ErrorCode::invalid_request, "multipart: part header line without colon");
    }
    const std::string_view name = line.substr(0, colon);
    if (name.empty() || name.find_first_of(" \t") != std::string_view::npos) {
        return fail(ErrorCode::invalid_request, "multipart: malformed part header name");
    }
    const std::string_view value = trim(line.substr(colon + 1));

    if (iequals(name, "content-disposition")) {
        if (std::exchange(disposition_seen_, true)) {
            return fail(ErrorCode::invalid_request,
                        "multipart: duplicate Content-Disposition in part");
        }
        return parse_content_disposition(value, current_);
    }
    if (iequals(name, "content-type")) {
        if (std::exchange(content_type_seen_, true)) {
            return fail(ErrorCode::invalid_request, "multipart: duplicate Content-Type in part");
        }
        current_.content_type = std::string(value);
    }
    return {};
}

Result<> MultipartParser::end_of_headers() {
    if (!disposition_seen_) {
        return fail(ErrorCode::invalid_request,
                    "multipart: part without Content-Disposition header");
    }
    state_ = State::data;
    matched_ = 0;
    if (auto r = handler_.on_part_begin(current_); !r) return r;
    part_open_ = true;
    return {};
}

std::string media_type(std::string_view content_type) {
    std::string type(trim(content_type.substr(0, content_type.find(';'))));
    std::ranges::transform(type, type.begin(), ascii_lower);
    return type;
}

std::string charset_of(std::string_view content_type) {
    const std::size_t type_end = std::min(content_type.find(';'), content_type.size());
    auto params = parse_parameters(content_type.substr(type_end));
    if (!params) return "";
    for (Parameter& param : *params) {
        if (!iequals(param.name, "charset")) continue;
        std::ranges::transform(param.value, param.value.begin(), ascii_lower);
        return std::move(param.value);
    }
    return "";
}

std::optional<std::string> multipart_boundary(std::string_view content_type) {
    const std::size_t type_end = std::min(content_type.find(';'), content_type.size());
    if (media_type(content_type) != "multipart/form-data") return std::nullopt;
    auto params = parse_parameters(content_type.substr(type_end));
    if (!params) return std::nullopt;

    std::optional<std::string> boundary;
    for (Parameter& param : *params) {
        if (!iequals(param.name, "boundary")) continue;
        if (boundary) return std::nullopt;  // ambiguous
        boundary = std::move(param.value);
    }
    if (!boundary || !valid_boundary(*boundary)) return std::nullopt;
    return boundary;
}

}  // namespace kiln::http
