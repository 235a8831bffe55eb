#pragma once
// Times are UTC with millisecond precision everywhere: in the database (DATETIME(3)), in JSON
// (RFC 3339 "2026-11-24T15:28:25.123Z") and in logs.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::util {

using MillisSinceEpoch = std::int64_t;

MillisSinceEpoch now_ms();

// "2026-11-24T15:28:25.123Z"
std::string format_rfc3339(MillisSinceEpoch ms);

// MariaDB's DATETIME(3) text "2026-11-24 15:28:25.123" (UTC) to RFC 3339; nullopt when malformed.
std::optional<std::string> sql_datetime_to_rfc3339(std::string_view sql);

}  // namespace kiln::util
