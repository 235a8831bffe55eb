#pragma once
// What run_child keeps of a child's output: the size-capped log file, the tail of stdout and
// stderr for the error message, and stdout split into lines for progress parsing. Internal to
// core/process.

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kiln::process {

inline constexpr std::size_t kTailBytes = 4096;
inline constexpr std::size_t kMaxLineBytes = 64 * 1024;
inline constexpr std::string_view kTruncatedMarker = "[kiln: log truncated]\n";

// Splits stdout into lines, keeps the size-capped log and the tail of stdout+stderr (of stderr
// only when `stdout_only_parsed`: stdout then goes to on_line alone).
class OutputCollector final {
  public:
    OutputCollector(int log_fd, std::uint64_t log_budget,
                    const std::function<void(std::string_view)>& on_line, bool stdout_only_parsed)
        : log_fd_(log_fd),
          log_left_(log_budget),
          on_line_(on_line),
          stdout_only_parsed_(stdout_only_parsed) {}

    void add(bool is_stdout, std::string_view data) {
        if (!is_stdout || !stdout_only_parsed_) {
            append_log(data);
            append_tail(data);
        }
        if (is_stdout && on_line_) split_lines(data);
    }

    // Delivers a last stdout line that had no newline.
    void finish() {
        if (!line_.empty() && on_line_) on_line_(line_);
        line_.clear();
    }

    std::string take_tail() {
        if (tail_.size() > kTailBytes) {
            tail_.erase(0, tail_.size() - kTailBytes);
            tail_cut_ = true;
        }
        // Do not start in the middle of a UTF-8 sequence.
        std::size_t skip = 0;
        while (tail_cut_ && skip < 3 && skip < tail_.size() &&
               (static_cast<unsigned char>(tail_[skip]) & 0xC0) == 0x80) {
            ++skip;
        }
        tail_.erase(0, skip);
        return std::move(tail_);
    }

  private:
    void append_log(std::string_view data) {
        if (log_fd_ < 0 || log_done_ || data.empty()) return;
        if (data.size() <= log_left_) {
            write_log(data);
            log_left_ -= data.size();
            return;
        }
        write_log(data.substr(0, static_cast<std::size_t>(log_left_)));
        log_left_ = 0;
        if (!log_at_line_start_) write_log("\n");
        write_log(kTruncatedMarker);
        log_done_ = true;
    }

    void write_log(std::string_view data) {
        while (!data.empty() && !log_done_) {
            const ssize_t n = ::write(log_fd_, data.data(), data.size());
            if (n < 0 && errno == EINTR) continue;
            // A failing log (disk full) must not stop the child: the output is dropped instead.
            if (n <= 0) {
                log_done_ = true;
                return;
            }
            log_at_line_start_ = data[static_cast<std::size_t>(n) - 1] == '\n';
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }

    void append_tail(std::string_view data) {
        if (data.size() >= kTailBytes) {
            tail_.assign(data.substr(data.size() - kTailBytes));
            tail_cut_ = true;
            return;
        }
        tail_.append(data);
        if (tail_.size() > 2 * kTailBytes) {  // trimmed in batches to keep appends cheap
            tail_.erase(0, tail_.size() - kTailBytes);
            tail_cut_ = true;
        }
    }

    void split_lines(std::string_view data) {
        while (!data.empty()) {
            const std::size_t newline = data.find('\n');
            const std::string_view piece = data.substr(0, newline);
            if (newline != std::string_view::npos && line_.empty()) {
                on_line_(piece.substr(0, kMaxLineBytes));  // the common case: no copy
            } else {
                if (line_.size() < kMaxLineBytes) {
                    line_.append(piece.substr(0, kMaxLineBytes - line_.size()));
                }
                if (newline == std::string_view::npos) return;
                on_line_(line_);
                line_.clear();
            }
            data.remove_prefix(newline + 1);
        }
    }

    int log_fd_;
    std::uint64_t log_left_;
    bool log_done_ = false;
    bool log_at_line_start_ = true;
    const std::function<void(std::string_view)>& on_line_;
    const bool stdout_only_parsed_;
    std::string tail_;
    bool tail_cut_ = false;
    std::string line_;  // an unfinished stdout line, at most kMaxLineBytes
};

}  // namespace kiln::process
