#pragma once
// One JSON object per line on stderr (journald or the dev stack's log file picks it up), with the
// stable keys ts, level, msg and whatever fields the caller adds (job, type, ms, ...).

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

}  // namespace kiln::log
