// fsync_rate: how many durable 4 KiB appends one thread gets per second from a file system.
// bench/api compares POST /api/v1/jobs against this figure: an upload is durable only once its
// bytes (and the job row) are on disk, so one thread syncing in a loop is the rate that a
// service doing one sync per request in line cannot beat; batching syncs can.
//
//   fsync_rate --dir DIR [--seconds N] [--bytes B]
//
// Appends B bytes (4096) and calls fdatasync(2), for N seconds (5), on a temporary file in DIR,
// which must be on the file system under test (bench/api passes the storage root). Appending
// rather than overwriting makes each fdatasync commit a size change too, as a new upload does.
// Prints one line: `fsync_rate syncs=... seconds=... syncs_per_s=... p50_ms=... p99_ms=...`.
// Exit status 1 when a system call fails (message on stderr), 2 on bad arguments.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "core/result.hpp"
#include "core/util/fd.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The file lives only for the run: its name is removed when the object goes, whatever happens.
class TempFile final {
  public:
    static kiln::Result<TempFile> create(const fs::path& dir) {
        std::string path = (dir / "fsync-rate-XXXXXX").string();
        int fd = ::mkostemp(path.data(), O_CLOEXEC);
        if (fd < 0) return kiln::fail_errno("mkostemp(" + path + ")", errno);
        return TempFile(kiln::util::UniqueFd(fd), std::move(path));
    }
    ~TempFile() {
        if (!path_.empty()) ::unlink(path_.c_str());
    }
    TempFile(TempFile&& other) noexcept
        : fd_(std::move(other.fd_)), path_(std::exchange(other.path_, {})) {}
    TempFile& operator=(TempFile&&) = delete;
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] const std::string& path() const { return path_; }

  private:
    TempFile(kiln::util::UniqueFd fd, std::string path)
        : fd_(std::move(fd)), path_(std::move(path)) {}
    kiln::util::UniqueFd fd_;
    std::string path_;
};

struct Measurement {
    std::uint64_t syncs = 0;
    double seconds = 0;
    std::vector<double> latencies_ms;  // one per write+fdatasync
};

// Past this size the file is truncated and appended to from the start again, so a fast disk
// does not fill up; one truncation per 16384 syncs of 4 KiB does not show in the rate.
constexpr off_t wrap_bytes = 64 * 1024 * 1024;

kiln::Result<Measurement> measure(const TempFile& file, std::size_t bytes, double seconds) {
    std::string block(bytes, '\0');
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>('a' + i % 26);
    Measurement m;
    off_t offset = 0;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(seconds);
    auto now = start;
    while (now < deadline) {
        if (offset + static_cast<off_t>(bytes) > wrap_bytes) {
            if (::ftruncate(file.fd(), 0) != 0)
                return kiln::fail_errno("ftruncate(" + file.path() + ")", errno);
            offset = 0;
        }
        const auto before = now;
        std::size_t done = 0;
        while (done < bytes) {
            ssize_t n = ::pwrite(file.fd(), block.data() + done, bytes - done,
                                 offset + static_cast<off_t>(done));
            if (n < 0) {
                if (errno == EINTR) continue;
                return kiln::fail_errno("pwrite(" + file.path() + ")", errno);
            }
            done += static_cast<std::size_t>(n);
        }
        offset += static_cast<off_t>(bytes);
        if (::fdatasync(file.fd()) != 0)
            return kiln::fail_errno("fdatasync(" + file.path() + ")", errno);
        now = Clock::now();
        ++m.syncs;
        m.latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - before).count());
    }
    m.seconds = std::chrono::duration<double>(now - start).count();
    return m;
}

double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0;
    auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
    return values[k];
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"fsync_rate: durable 4 KiB appends per second from one thread"};
    std::string dir;
    double seconds = 5;
    std::size_t bytes = 4096;
    cli.add_option("--dir", dir, "directory on the file system under test")->required();
    cli.add_option("--seconds", seconds, "how long to measure")->check(CLI::Range(0.1, 3600.0));
    cli.add_option("--bytes", bytes, "bytes written before each fdatasync")
        ->check(CLI::Range(std::size_t{1}, std::size_t{16} << 20));
    CLI11_PARSE(cli, argc, argv);

    auto file = TempFile::create(dir);
    if (!file) {
        std::fprintf(stderr, "fsync_rate: %s\n", file.error().describe().c_str());
        return 1;
    }
    auto m = measure(*file, bytes, seconds);
    if (!m) {
        std::fprintf(stderr, "fsync_rate: %s\n", m.error().describe().c_str());
        return 1;
    }
    fmt::print(
        "fsync_rate syncs={} seconds={:.3f} syncs_per_s={:.1f} p50_ms={:.3f} p99_ms={:.3f}\n",
        m->syncs, m->seconds, static_cast<double>(m->syncs) / m->seconds,
        percentile(m->latencies_ms, 50), percentile(m->latencies_ms, 99));
    return 0;
}
