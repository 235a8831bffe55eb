#pragma once
// Reading progress from a converter's stdout.

#include <optional>
#include <string>
#include <string_view>

namespace kiln::converters {

struct ProgressUpdate {
    int percent = 0;   // 0..100
    std::string step;  // empty: unchanged
};

// "[PROGRESS] 42" or "[PROGRESS] 42 encoding" (percent clamped to 0..100).
std::optional<ProgressUpdate> parse_progress_line(std::string_view line);

// ffmpeg's -progress output ("out_time_us=1234567", "progress=end") against the input's
// duration in seconds; nullopt for lines that carry no progress.
std::optional<int> parse_ffmpeg_progress(std::string_view line, double duration_seconds);

}  // namespace kiln::converters
