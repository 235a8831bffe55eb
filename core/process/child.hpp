#pragma once
// Running a converter program: an argument vector (never a shell), its own process group and
// work directory, resource limits, stdin closed, stdout and stderr captured into a size-capped
// log, killed as a group on timeout or cancellation.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace kiln::process {

struct Limits {
    std::optional<std::uint64_t> cpu_seconds;          // RLIMIT_CPU
    std::optional<std::uint64_t> address_space_bytes;  // RLIMIT_AS
    std::optional<std::uint64_t> open_files;           // RLIMIT_NOFILE
    std::optional<std::uint64_t> file_size_bytes;      // RLIMIT_FSIZE (largest output file)
};

struct ChildSpec {
    std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
    std::filesystem::path workdir;  // the child's cwd
    std::vector<std::string> env;   // "NAME=value"; the whole environment (nothing inherited)
    Limits limits;
    std::chrono::milliseconds timeout{600'000};
    std::filesystem::path log_file;         // stdout+stderr appended here; empty: not kept
    std::uint64_t max_log_bytes = 1 << 20;  // the log stops growing past this (marked)
    // Called with each complete stdout line (without the newline), from the calling thread.
    std::function<void(std::string_view line)> on_stdout_line;
    // stdout carries only machine-read lines (ffmpeg's -progress reports, several a second):
    // they go to on_stdout_line but not to the log or the tail, which stay for what a person
    // reads when a job fails, and which they would otherwise fill.
    bool stdout_only_parsed = false;
    // Polled at least every 100 ms; when it becomes true the group is killed (cancelled).
    const std::atomic<bool>* stop = nullptr;
};

struct ChildOutcome {
    int exit_code = -1;   // when the child exited
    int term_signal = 0;  // when it was killed by a signal
    bool timed_out = false;
    bool stopped = false;  // killed because *stop became true
    std::string log_tail;  // the last ~4 KiB of stdout (unless only parsed) and stderr
    std::chrono::milliseconds duration{0};

    [[nodiscard]] bool succeeded() const {
        return exit_code == 0 && term_signal == 0 && !timed_out && !stopped;
    }
    // "exit status 1", "killed by signal 9 (SIGKILL)", "timed out after 30 s", "stopped".
    [[nodiscard]] std::string describe() const;
};

// Runs the child to completion. Fails (Result error) only when it could not be started:
// program not found (not_found), cannot create pipes or the process (io). A child that starts
// and fails is a successful call with an outcome that says how it failed. On timeout or stop the
// whole process group gets SIGKILL, and the call returns only after the child was reaped.
Result<ChildOutcome> run_child(const ChildSpec& spec);

}  // namespace kiln::process
