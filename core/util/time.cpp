#include "core/util/time.hpp"

#include <chrono>
#include <ctime>

#include <fmt/format.h>

namespace kiln::util {

MillisSinceEpoch now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_rfc3339(MillisSinceEpoch ms) {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

std::optional<std::string> sql_datetime_to_rfc3339(std::string_view sql) {
    // "YYYY-MM-DD HH:MM:SS" optionally followed by ".fff" (up to 6 digits).
    if (sql.size() < 19 || sql[10] != ' ') return std::nullopt;
    std::string out(sql.substr(0, 19));
    out[10] = 'T';
    std::string frac = "000";
    if (sql.size() > 20 && sql[19] == '.') {
        auto digits = sql.substr(20);
        for (std::size_t i = 0; i < 3 && i < digits.size(); ++i) frac[i] = digits[i];
    }
    return out + "." + frac + "Z";
}

}  // namespace kiln::util
