#pragma once
// What the worker learns about an input before running a converter on it, with ffprobe, and the
// environment every converter program gets.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::worker {

// The child's environment: nothing inherited from the daemon, vips in its untrusted-input mode.
std::vector<std::string> child_environment(const std::filesystem::path& workdir);

// The input's duration in seconds (for ffmpeg's progress and {seek:...}); 0 when unknown, or
// when `stop` became true (the job is cancelled or its worker stops).
double probe_duration(const std::filesystem::path& input, const std::filesystem::path& workdir,
                      const std::atomic<bool>* stop);

// What every probe of an untrusted input runs under: a bounded run on local files only.
constexpr std::uint64_t probe_address_space_bytes = 1ull << 30;
constexpr std::chrono::seconds probe_timeout{30};

}  // namespace kiln::worker
