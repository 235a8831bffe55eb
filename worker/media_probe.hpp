#pragma once
// What the worker learns about an input before running a converter on it, with ffprobe, and the
// environment every converter program gets.

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::worker {

// The child's environment: nothing inherited from the daemon, vips in its untrusted-input mode.
std::vector<std::string> child_environment(const std::filesystem::path& workdir);

// The input's duration in seconds (for ffmpeg's progress and {seek:...}); 0 when unknown.
double probe_duration(const std::filesystem::path& input, const std::filesystem::path& workdir);

}  // namespace kiln::worker
