#include "core/converters/progress.hpp"

#include <algorithm>
#include <charconv>

namespace kiln::converters {

std::optional<ProgressUpdate> parse_progress_line(std::string_view line) {
    constexpr std::string_view tag = "[PROGRESS]";
    if (!line.starts_with(tag)) return std::nullopt;
    line.remove_prefix(tag.size());
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    double percent = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), percent);
    if (ec != std::errc() || ptr == line.data()) return std::nullopt;
    ProgressUpdate update;
    update.percent = static_cast<int>(std::clamp(percent, 0.0, 100.0));
    std::string_view rest(ptr, static_cast<std::size_t>(line.data() + line.size() - ptr));
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\r')) rest.remove_suffix(1);
    update.step = std::string(rest.substr(0, 128));
    return update;
}

std::optional<int> parse_ffmpeg_progress(std::string_view line, double duration_seconds) {
    if (line == "progress=end") return 100;
    // out_time_us and out_time_ms both count microseconds (the latter is a historic misnomer).
    for (std::string_view key : {"out_time_us=", "out_time_ms="}) {
        if (!line.starts_with(key)) continue;
        line.remove_prefix(key.size());
        long long us = 0;
        auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), us);
        if (ec != std::errc() || duration_seconds <= 0 || us < 0) return std::nullopt;
        double percent = static_cast<double>(us) / 1e6 / duration_seconds * 100.0;
        // 100 is reserved for the end: a run is complete only when ffmpeg says so.
        return static_cast<int>(std::clamp(percent, 0.0, 99.0));
    }
    return std::nullopt;
}

}  // namespace kiln::converters
