#include "core/http/response.hpp"

namespace kiln::http {

int status_of(ErrorCode code) {
    switch (code) {
        case ErrorCode::invalid_request:
            return 400;
        case ErrorCode::unauthorized:
            return 401;
        case ErrorCode::not_found:
            return 404;
        case ErrorCode::method_not_allowed:
            return 405;
        case ErrorCode::request_timeout:
            return 408;
        case ErrorCode::conflict:
            return 409;
        case ErrorCode::length_required:
            return 411;
        case ErrorCode::payload_too_large:
            return 413;
        case ErrorCode::unsupported_media_type:
            return 415;
        case ErrorCode::unknown_type:
        case ErrorCode::idempotency_mismatch:
            return 422;
        case ErrorCode::insufficient_storage:
            return 507;
        case ErrorCode::unavailable:
        case ErrorCode::io:
        case ErrorCode::config:
        case ErrorCode::internal:
            return 503;
    }
    return 503;
}

std::string_view reason_phrase(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
        case 503:
            return "Service Unavailable";
        case 507:
            return "Insufficient Storage";
        default:
            return "Unknown";
    }
}

Response json_response(int status, const nlohmann::json& body) {
    Response r;
    r.status = status;
    r.header("Content-Type", "application/json");
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

Response problem(const Error& error, nlohmann::json extra) {
    const int status = status_of(error.code);
    // Internal failures are reported as "unavailable" so clients see one retryable code.
    const std::string_view code = status == 503 ? "unavailable" : to_string(error.code);
    nlohmann::json body = {{"type", "about:blank"},
                           {"title", reason_phrase(status)},
                           {"status", status},
                           {"code", code},
                           // 503 details would leak socket paths and SQL errors: keep them
                           // for the log.
                           {"detail", status == 503 ? "the service cannot complete this request "
                                                      "now; retry later"
                                                    : error.message}};
    if (extra.is_object()) {
        for (auto& [k, v] : extra.items()) body[k] = std::move(v);
    }
    Response r;
    r.status = status;
    r.header("Content-Type", "application/problem+json");
    if (status == 503) r.header("Retry-After", "1");
    if (status == 401) r.header("WWW-Authenticate", "Bearer");
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return r;
}

}  // namespace kiln::http
