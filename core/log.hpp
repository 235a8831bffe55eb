#pragma once
// One JSON object per line on stderr (journald or the dev stack's log file picks it up), with the
// stable keys ts, level, msg and whatever fields the caller adds (job, type, ms, ...).

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kiln::log {

enum class Level { debug, info, warning, error };

void set_min_level(Level level);
void write(Level level, std::string_view msg, nlohmann::json fields = nlohmann::json::object());

inline void debug(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    write(Level::debug, msg, std::move(f));
}
inline void info(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    write(Level::info, msg, std::move(f));
}
inline void warning(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    write(Level::warning, msg, std::move(f));
}
inline void error(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    write(Level::error, msg, std::move(f));
}

// A budget for a line that a failing dependency would repeat on every request (a database
// outage under load wrote 30,000 lines in 7 s): at most `per_second` lines a second are let
// through, and the first one after a dropped stretch says how many were dropped.
class RateLimit {
  public:
    using Clock = std::chrono::steady_clock;
    explicit RateLimit(unsigned per_second) : per_second_(per_second) {}
    // nullopt: drop this line. Else the lines dropped since the last one let through (often 0).
    std::optional<std::uint64_t> admit(Clock::time_point now = Clock::now());

  private:
    const unsigned per_second_;
    std::mutex mutex_;
    Clock::time_point window_start_{};
    unsigned in_window_ = 0;
    std::uint64_t dropped_ = 0;
};

// write() within `budget`, with "dropped": N when N lines were dropped just before this one.
void write_limited(RateLimit& budget, Level level, std::string_view msg,
                   nlohmann::json fields = nlohmann::json::object());

}  // namespace kiln::log
