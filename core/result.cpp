#include "core/result.hpp"

#include <cerrno>
#include <cstring>
#include <string>

namespace kiln {

std::string_view to_string(ErrorCode code) {
    switch (code) {
        case ErrorCode::invalid_request:
            return "invalid_request";
        case ErrorCode::unauthorized:
            return "unauthorized";
        case ErrorCode::not_found:
            return "not_found";
        case ErrorCode::method_not_allowed:
            return "method_not_allowed";
        case ErrorCode::request_timeout:
            return "request_timeout";
        case ErrorCode::conflict:
            return "conflict";
        case ErrorCode::length_required:
            return "length_required";
        case ErrorCode::payload_too_large:
            return "payload_too_large";
        case ErrorCode::unsupported_media_type:
            return "unsupported_media_type";
        case ErrorCode::unknown_type:
            return "unknown_type";
        case ErrorCode::idempotency_mismatch:
            return "idempotency_mismatch";
        case ErrorCode::unavailable:
            return "unavailable";
        case ErrorCode::insufficient_storage:
            return "insufficient_storage";
        case ErrorCode::io:
            return "io";
        case ErrorCode::config:
            return "config";
        case ErrorCode::internal:
            return "internal";
    }
    return "internal";
}

std::string Error::describe() const {
    if (native.empty()) return message;
    return message + " (" + native + ")";
}

std::unexpected<Error> fail_errno(std::string_view operation, int err) {
    const char* name = strerrorname_np(err);
    ErrorCode code =
        (err == ENOSPC || err == EDQUOT) ? ErrorCode::insufficient_storage : ErrorCode::io;
    return fail(code, std::string(operation) + ": " + std::strerror(err),
                name != nullptr ? name : std::to_string(err));
}

}  // namespace kiln
