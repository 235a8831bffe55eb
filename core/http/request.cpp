#include "core/http/request.hpp"

#include <cgicc/CgiUtils.h>

#include <algorithm>

namespace kiln::http {

Result<std::map<std::string, std::string>> parse_query(std::string_view query) {
    if (query.size() > 4096) return fail(ErrorCode::invalid_request, "query string too long");
    std::map<std::string, std::string> out;
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        if (!pair.empty()) {
            auto eq = pair.find('=');
            std::string name = cgicc::form_urldecode(std::string(pair.substr(0, eq)));
            std::string value = eq == std::string_view::npos
                                    ? std::string()
                                    : cgicc::form_urldecode(std::string(pair.substr(eq + 1)));
            out.emplace(std::move(name), std::move(value));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return out;
}

Result<> check_body_length(const Request& request, std::uint64_t limit) {
    if (!request.content_length && !request.chunked) {
        return fail(ErrorCode::length_required,
                    "a Content-Length header or a chunked body is required");
    }
    if (request.content_length && *request.content_length > limit) {
        return fail(ErrorCode::payload_too_large,
                    "the body is larger than " + std::to_string(limit) + " bytes");
    }
    return {};
}

bool BodyPace::on_read(std::uint64_t bytes, Clock::time_point now) {
    bytes_in_window_ += bytes;
    if (now - window_start_ < window_) return true;
    const bool enough = bytes_in_window_ >= min_bytes_;
    window_start_ = now;
    bytes_in_window_ = 0;
    return enough;
}

Result<> read_body(Request& request, std::uint64_t limit, char* buffer, std::size_t buffer_size,
                   const std::function<Result<>(std::string_view)>& consume) {
    if (auto r = check_body_length(request, limit); !r) return r;
    // A chunked body may run to the limit; one with a length stops there.
    const std::uint64_t expected = request.content_length.value_or(limit + 1);
    std::uint64_t got = 0;
    while (got < expected) {
        const auto want =
            static_cast<std::size_t>(std::min<std::uint64_t>(expected - got, buffer_size));
        const std::size_t n = request.body->read(buffer, want);
        if (n == 0) break;
        got += n;
        if (got > limit) {
            return fail(ErrorCode::payload_too_large,
                        "the body is larger than " + std::to_string(limit) + " bytes");
        }
        if (auto r = consume(std::string_view(buffer, n)); !r) return r;
    }
    if (request.body->too_slow()) {
        return fail(ErrorCode::request_timeout,
                    "the body arrived too slowly: less than " +
                        std::to_string(BodyPace::default_min_bytes / 1024) + " KiB in " +
                        std::to_string(BodyPace::default_window.count()) + " s");
    }
    const bool whole =
        request.content_length ? got == *request.content_length : request.body->complete();
    if (!whole) return fail(ErrorCode::invalid_request, "the request body ended early");
    return {};
}

Result<std::string> read_small_body(Request& request, std::size_t limit) {
    std::string body;
    char buffer[16 * 1024];
    auto r =
        read_body(request, limit, buffer, sizeof buffer, [&](std::string_view data) -> Result<> {
            body.append(data);
            return {};
        });
    if (!r) return std::unexpected(r.error());
    return body;
}

}  // namespace kiln::http
