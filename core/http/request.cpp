#include "core/http/request.hpp"

#include <cgicc/CgiUtils.h>

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

Result<std::string> read_small_body(Request& request, std::size_t limit) {
    if (!request.content_length) {
        return fail(ErrorCode::length_required, "a Content-Length header is required");
    }
    if (*request.content_length > limit) {
        return fail(ErrorCode::payload_too_large,
                    "the body is larger than " + std::to_string(limit) + " bytes");
    }
    std::string body(*request.content_length, '\0');
    std::size_t got = 0;
    while (got < body.size()) {
        std::size_t n = request.body->read(body.data() + got, body.size() - got);
        if (n == 0) break;
        got += n;
    }
    if (got != body.size()) return fail(ErrorCode::invalid_request, "the body ended early");
    return body;
}

}  // namespace kiln::http
