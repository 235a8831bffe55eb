#include "core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <string>
#include <utility>

#include "core/util/time.hpp"

namespace kiln::log {
namespace {

std::atomic<Level> min_level{Level::info};

const char* name(Level level) {
    switch (level) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warning:
            return "warning";
        case Level::error:
            return "error";
    }
    return "info";
}

}  // namespace

void set_min_level(Level level) { min_level = level; }

void write(Level level, std::string_view msg, nlohmann::json fields) {
    if (level < min_level.load(std::memory_order_relaxed)) return;
    // ts, level and msg first, then the caller's fields: easy to read and to grep.
    nlohmann::ordered_json line = {
        {"ts", util::format_rfc3339(util::now_ms())}, {"level", name(level)}, {"msg", msg}};
    if (fields.is_object()) {
        for (auto& [k, v] : fields.items()) line[k] = std::move(v);
    }
    // One write(2) per line so lines from several threads never interleave.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text.push_back('\n');
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, text.data(), text.size());
}

std::optional<std::uint64_t> RateLimit::admit(Clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (now - window_start_ >= std::chrono::seconds(1)) {
        window_start_ = now;
        in_window_ = 0;
    }
    if (in_window_ >= per_second_) {
        ++dropped_;
        return std::nullopt;
    }
    ++in_window_;
    return std::exchange(dropped_, 0);
}

void write_limited(RateLimit& budget, Level level, std::string_view msg, nlohmann::json fields) {
    const auto dropped = budget.admit();
    if (!dropped) return;
    if (*dropped > 0 && fields.is_object()) fields["dropped"] = *dropped;
    write(level, msg, std::move(fields));
}

}  // namespace kiln::log
