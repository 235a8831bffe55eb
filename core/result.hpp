#pragma once
// Errors are values at module boundaries: a stable code, the native error where there is one,
// and a message formatted as "operation: message (errno/sqlstate)".

#include <expected>
#include <string>
#include <string_view>

namespace kiln {

// Stable error codes. Each HTTP-facing code maps to exactly one problem response
// (see core/http/response.hpp); the others are internal and surface as 503/500-free fallbacks.
enum class ErrorCode {
    invalid_request,         // 400
    unauthorized,            // 401
    not_found,               // 404
    method_not_allowed,      // 405
    request_timeout,         // 408: a body that arrives too slowly
    conflict,                // 409
    length_required,         // 411
    payload_too_large,       // 413
    unsupported_media_type,  // 415
    unknown_type,            // 422
    idempotency_mismatch,    // 422: an Idempotency-Key reused with a different request
    unavailable,             // 503: database or another dependency is down
    insufficient_storage,    // 507
    io,                      // file system error that is not "disk full"
    config,                  // invalid configuration
    internal,                // a bug or an unexpected library failure
};

std::string_view to_string(ErrorCode code);

struct Error {
    ErrorCode code = ErrorCode::internal;
    std::string message;
    std::string native;  // errno name, sqlstate or library code; empty when there is none

    // "operation: message (native)" as used in logs.
    [[nodiscard]] std::string describe() const;
};

template <typename T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message, std::string native = {}) {
    return std::unexpected(Error{code, std::move(message), std::move(native)});
}

// Error from errno: "operation: strerror (ENAME)"; ENOSPC/EDQUOT map to insufficient_storage.
std::unexpected<Error> fail_errno(std::string_view operation, int err);

}  // namespace kiln
