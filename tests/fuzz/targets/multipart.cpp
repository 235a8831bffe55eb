// Fuzzes MultipartParser and multipart_boundary.
//
// Input: 4 control bytes, a Content-Type line, the body.
//   byte 0  limits: '0' (even) = production defaults; odd = small limits taken from its bits,
//           so the part, header-line and header-size limits are reached within a few KiB
//   byte 1  handler failure: '0' (even) = none; odd = the handler fails its (byte >> 1)-th
//           begin/end callback (counting from 0)
//   byte 2-3  seed of the chunk sizes for the chunked run
//   then    a Content-Type value up to the first LF (one CR before it is dropped); the boundary
//           is multipart_boundary() of it, or the line itself when that says nullopt (so
//           invalid boundaries reach the parser too)
//   then    the body
//
// The body is parsed three times: in one feed(), one byte per feed(), and in chunks of sizes
// drawn from the seed (delimiters, CRLFs and header lines split at every place). The handler
// checks the callback protocol, and the three runs must agree on every part (headers and the
// concatenated data) and on the outcome: chunking is the network's choice, never the client's.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/multipart.hpp"
#include "core/result.hpp"

namespace {

using kiln::Error;
using kiln::ErrorCode;
using kiln::Result;
using kiln::http::MultipartHandler;
using kiln::http::MultipartLimits;
using kiln::http::MultipartParser;
using kiln::http::PartHeaders;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "multipart fuzz: invariant violated: %s\n", what);
    std::abort();
}

void check(bool ok, const char* what) {
    if (!ok) violated(what);
}

struct Part {
    PartHeaders headers;
    std::string data;
    bool ended = false;

    bool operator==(const Part& other) const {
        return headers.name == other.headers.name && headers.filename == other.headers.filename &&
               headers.content_type == other.headers.content_type && data == other.data &&
               ended == other.ended;
    }
};

// Records the parts and checks that callbacks come in begin (data)* end order, never after an
// error, within the part limit.
class CheckingHandler final : public MultipartHandler {
  public:
    CheckingHandler(const MultipartLimits& limits, std::optional<std::size_t> fail_at)
        : limits_(limits), fail_at_(fail_at) {}

    std::vector<Part> parts;
    bool stopped = false;  // the parser returned an error: no callback may follow

    Result<> on_part_begin(const PartHeaders& headers) override {
        check(!stopped, "on_part_begin after an error");
        check(parts.empty() || parts.back().ended, "on_part_begin inside a part");
        check(!headers.name.empty(), "part without a name");
        check(parts.size() < limits_.max_parts, "more parts than max_parts");
        parts.push_back(Part{.headers = headers, .data = {}, .ended = false});
        return maybe_fail();
    }

    Result<> on_part_data(std::string_view data) override {
        check(!stopped, "on_part_data after an error");
        check(!parts.empty() && !parts.back().ended, "on_part_data outside a part");
        check(!data.empty(), "empty on_part_data");
        parts.back().data.append(data);
        return {};
    }

    Result<> on_part_end() override {
        check(!stopped, "on_part_end after an error");
        check(!parts.empty() && !parts.back().ended, "on_part_end outside a part");
        parts.back().ended = true;
        return maybe_fail();
    }

  private:
    Result<> maybe_fail() {
        if (fail_at_ && events_++ == *fail_at_) {
            return kiln::fail(ErrorCode::internal, "handler failure injected by the fuzzer");
        }
        return {};
    }

    MultipartLimits limits_;
    std::optional<std::size_t> fail_at_;
    std::size_t events_ = 0;
};

struct Outcome {
    std::vector<Part> parts;
    std::optional<Error> error;
    std::size_t parts_seen = 0;
};

bool same_error(const std::optional<Error>& a, const std::optional<Error>& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a || (a->code == b->code && a->message == b->message && a->native == b->native);
}

// Tiny deterministic generator for chunk sizes: the fuzzer controls the seed.
struct ChunkSizes {
    std::uint32_t state;
    std::size_t next() {
        state = state * 1664525u + 1013904223u;
        const std::uint32_t r = state >> 16;
        // Mostly short chunks (every split of a delimiter), sometimes long ones.
        return (r & 3) == 0 ? 1 + (r >> 2) % 512 : 1 + (r >> 2) % 8;
    }
};

Outcome parse(const std::string& boundary, const MultipartLimits& limits,
              std::optional<std::size_t> fail_at, std::string_view body,
              const std::vector<std::size_t>& chunks) {
    CheckingHandler handler(limits, fail_at);
    MultipartParser parser(boundary, limits, handler);
    std::optional<Error> first_error;
    const auto after = [&](const Result<>& r) {
        if (first_error) {
            // Every call after an error returns that same error.
            check(!r && same_error(first_error, r.error()), "a call after an error changed it");
        } else if (!r) {
            first_error = r.error();
            handler.stopped = true;
        }
    };
    std::size_t offset = 0;
    for (std::size_t size : chunks) {
        after(parser.feed(body.substr(offset, size)));
        offset += size;
    }
    check(offset == body.size(), "chunk plan does not cover the body");
    after(parser.finish());
    after(parser.feed("trailing bytes after finish"));
    if (first_error) after(parser.finish());

    check(parser.parts_seen() <= limits.max_parts, "parts_seen() above max_parts");
    check(handler.parts.size() <= parser.parts_seen(), "more parts begun than seen");
    std::size_t data_bytes = 0;
    for (const Part& part : handler.parts) {
        data_bytes += part.data.size();
        // A delimiter inside a part would have ended it.
        check(part.data.find("\r\n--" + boundary) == std::string::npos,
              "part data contains the delimiter");
    }
    check(data_bytes <= body.size(), "more data delivered than the body holds");
    if (!first_error) {
        check(handler.parts.empty() || handler.parts.back().ended,
              "finish() succeeded with a part open");
    }
    return Outcome{.parts = std::move(handler.parts),
                   .error = std::move(first_error),
                   .parts_seen = parser.parts_seen()};
}

void check_same(const Outcome& a, const Outcome& b, const char* what) {
    if (a.parts == b.parts && same_error(a.error, b.error) && a.parts_seen == b.parts_seen) return;
    std::fprintf(stderr, "whole body: %zu parts, error: %s\n", a.parts.size(),
                 a.error ? a.error->message.c_str() : "none");
    std::fprintf(stderr, "%s: %zu parts, error: %s\n", what, b.parts.size(),
                 b.error ? b.error->message.c_str() : "none");
    violated("chunking changed the result");
}

bool printable_boundary(std::string_view b) {
    if (b.empty() || b.size() > 70 || b.back() == ' ') return false;
    for (char c : b) {
        if (c < 0x20 || c > 0x7e) return false;
    }
    return true;
}

// A found boundary is one the parser accepts, and quoting it round-trips.
void check_boundary(std::string_view content_type, const std::optional<std::string>& boundary) {
    if (!boundary) return;
    check(printable_boundary(*boundary), "multipart_boundary returned an invalid boundary");
    std::string quoted = "multipart/form-data; boundary=\"";
    for (char c : *boundary) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
    }
    quoted += '"';
    check(kiln::http::multipart_boundary(quoted) == boundary,
          "quoted boundary does not round-trip");
    check(
        kiln::http::multipart_boundary(std::string(content_type) + "; boundary=x") == std::nullopt,
        "a second boundary parameter was accepted");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto control = [&](std::size_t i) { return static_cast<unsigned char>(input[i]); };

    MultipartLimits limits;
    if (control(0) & 1) {
        limits.max_parts = 1 + ((control(0) >> 1) & 3);
        limits.max_headers_per_part = 1 + ((control(0) >> 3) & 3);
        limits.max_part_header_bytes = std::size_t{64} << ((control(0) >> 5) & 3);
    }
    std::optional<std::size_t> fail_at;
    if (control(1) & 1) fail_at = control(1) >> 1;
    ChunkSizes sizes{static_cast<std::uint32_t>(control(2) | control(3) << 8)};

    std::string_view rest = input.substr(4);
    const std::size_t newline = rest.find('\n');
    if (newline == std::string_view::npos) return 0;
    std::string_view content_type = rest.substr(0, newline);
    if (content_type.ends_with('\r')) content_type.remove_suffix(1);
    const std::string_view body = rest.substr(newline + 1);

    const std::optional<std::string> found = kiln::http::multipart_boundary(content_type);
    check_boundary(content_type, found);
    const std::string boundary = found.value_or(std::string(content_type));

    const Outcome whole = parse(boundary, limits, fail_at, body, {body.size()});
    const Outcome bytes =
        parse(boundary, limits, fail_at, body, std::vector<std::size_t>(body.size(), 1));
    check_same(whole, bytes, "one byte per feed");

    std::vector<std::size_t> chunks;
    for (std::size_t left = body.size(); left > 0;) {
        const std::size_t n = std::min(left, sizes.next());
        chunks.push_back(n);
        left -= n;
    }
    check_same(whole, parse(boundary, limits, fail_at, body, chunks), "random chunks");
    return 0;
}
