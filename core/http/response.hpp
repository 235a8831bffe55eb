#pragma once
// What a handler answers: status, headers, body. Errors become RFC 9457 problem responses in one
// place (problem()), one error code to one status and title.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace kiln::http {

struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    Response& header(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
        return *this;
    }
};

// 200/201 with an application/json body.
Response json_response(int status, const nlohmann::json& body);

// The problem response for `error`: application/problem+json with type, title, status, detail
// and the stable `code` member; `extra` members are merged in (e.g. detected_type for 415).
// 503 carries Retry-After. Internal codes (io, config, internal) answer 503 unavailable rather
// than 500: the request can be retried and nothing was recorded.
Response problem(const Error& error, nlohmann::json extra = nlohmann::json::object());

// The HTTP status and stable code for an error code.
int status_of(ErrorCode code);
std::string_view reason_phrase(int status);

}  // namespace kiln::http
