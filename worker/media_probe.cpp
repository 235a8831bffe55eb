#include "worker/media_probe.hpp"

#include <algorithm>
#include <chrono>
#include <string_view>

#include "core/process/child.hpp"

namespace kiln::worker {
namespace fs = std::filesystem;

namespace {

// Runs ffprobe with `args` on `input` and returns the largest number among its output lines
// (lines that are not numbers, such as "N/A", are skipped); 0 when there is none.
double largest_number_printed(std::vector<std::string> args, const fs::path& input,
                              const fs::path& workdir, const std::atomic<bool>* stop) {
    process::ChildSpec spec;
    // Local files only: a playlist or concat script disguised as media opens nothing else.
    spec.argv = {"ffprobe", "-v", "error", "-protocol_whitelist", "file"};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.argv.push_back(input.string());
    spec.workdir = workdir;
    spec.env = child_environment(workdir);
    spec.timeout = probe_timeout;
    spec.limits.address_space_bytes = probe_address_space_bytes;
    spec.stop = stop;
    double largest = 0;
    spec.on_stdout_line = [&](std::string_view line) {
        try {
            largest = std::max(largest, std::stod(std::string(line)));
        } catch (const std::exception&) {
        }
    };
    auto outcome = process::run_child(spec);
    return outcome && outcome->succeeded() ? largest : 0;
}

// How far into a file without a declared duration its packets are read: a file whose last
// timestamp comes before this ends there.
constexpr double packet_scan_seconds = 60;

}  // namespace

std::vector<std::string> child_environment(const fs::path& workdir) {
    return {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir.string(),
            "TMPDIR=" + workdir.string(), "LANG=C.UTF-8", "VIPS_BLOCK_UNTRUSTED=1"};
}

double probe_duration(const fs::path& input, const fs::path& workdir,
                      const std::atomic<bool>* stop) {
    const double declared = largest_number_printed(
        {"-show_entries", "format=duration", "-of", "default=noprint_wrappers=1:nokey=1"}, input,
        workdir, stop);
    if (declared > 0) return declared;
    // Live recordings (a browser's MediaRecorder WebM) declare no duration. Reading the packet
    // timestamps of the first minute (demuxing only) still finds the end of a short one, where a
    // seek past it would find no frame; a longer one stays unknown rather than wrongly short.
    const double last = largest_number_printed(
        {"-read_intervals", "%+" + std::to_string(static_cast<int>(packet_scan_seconds)),
         "-show_entries", "packet=pts_time", "-of", "csv=p=0"},
        input, workdir, stop);
    return last > 0 && last < packet_scan_seconds - 1 ? last : 0;
}

}  // namespace kiln::worker
