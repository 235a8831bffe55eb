#include "worker/job_runner.hpp"

#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <fmt/format.h>

#include "core/converters/command.hpp"
#include "core/converters/progress.hpp"
#include "core/process/child.hpp"
#include "worker/media_probe.hpp"

namespace kiln::worker {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

void RunningJob::set_progress(int percent, const std::string& step) {
    std::lock_guard lock(mutex_);
    if (percent == percent_ && step == step_) return;
    percent_ = percent;
    step_ = step;
    dirty_ = true;
}

bool RunningJob::take_progress(int& percent, std::string& step) {
    std::lock_guard lock(mutex_);
    if (!dirty_) return false;
    percent = percent_;
    step = step_;
    dirty_ = false;
    return true;
}

namespace {

constexpr std::size_t max_error_tail = 1500;

// Space the work directory's filesystem must still have after a step that reported success.
// ffmpeg 5.1 exits 0 when its writes fail with ENOSPC (it only logs "Error writing trailer ...:
// No space left on device") and leaves a truncated file, so a success on a full disk is not
// trusted: the attempt fails and is retried.
constexpr std::uint64_t min_free_bytes_after_step = 1 << 20;

Result<> check_space_after_step(const fs::path& workdir, std::string_view step) {
    struct statvfs usage {};
    if (::statvfs(workdir.c_str(), &usage) != 0) return {};  // cannot tell: trust the exit status
    const std::uint64_t available = std::uint64_t{usage.f_bavail} * usage.f_frsize;
    if (available >= min_free_bytes_after_step) return {};
    return fail(ErrorCode::internal,
                fmt::format("{}: exited 0 on a full disk ({} bytes left where it writes: No space "
                            "left on device), so its output may be truncated",
                            step, available));
}

std::string tail(const std::string& text, std::size_t n) {
    return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// Result files ready to publish: results/{job}/ appears when staging->commit() runs.
struct Staged {
    std::vector<jobs::FileRecord> results;
    std::shared_ptr<storage::Staging> staging;  // null when there are no files
};

class Attempt {
  public:
    Attempt(const converters::Definition& def, RunningJob& running, const storage::Storage& storage,
            const RunnerLimits& limits, magic::Detector& magic)
        : def_(def),
          running_(running),
          job_(running.job()),
          storage_(storage),
          limits_(limits),
          magic_(magic) {
        workdir_ = storage.root() / "tmp" / fmt::format("work-{}-{}", job_.id, job_.attempt);
        // Inside the work directory, so its lock covers it; outputs never start with '.'.
        log_file_ = workdir_ / ".kiln-attempt.log";
    }

    ~Attempt() {
        std::error_code ec;
        fs::remove_all(workdir_, ec);
    }

    // Completed (results staged, published when the outcome is recorded) or an error message
    // for a failed attempt.
    Result<Staged> run() {
        std::error_code ec;
        fs::remove_all(workdir_, ec);
        if (!fs::create_directories(workdir_, ec) || ec) {
            return fail_errno("mkdir(" + workdir_.string() + ")", ec.value());
        }
        auto lock = storage::DirectoryLock::acquire(workdir_);
        if (!lock) return std::unexpected(lock.error());
        workdir_lock_.emplace(std::move(*lock));
        std::vector<std::string> outputs;
        for (const auto& o : def_.run.outputs) {
            auto name = converters::expand_output_name(o, job_.params);
            if (!name) return std::unexpected(name.error());
            outputs.push_back(*name);
        }
        converters::ExpansionContext ctx;
        ctx.params = job_.params;
        ctx.workdir = workdir_;
        ctx.outputs = outputs;
        if (!job_.sources.empty()) {
            ctx.input = storage_.path_of(storage::Area::sources, job_.id, job_.sources[0].name);
        }
        bool wants_duration = def_.run.progress == "ffmpeg";
        for (const auto& step : def_.run.steps) {
            wants_duration = wants_duration || converters::needs_duration(step.args);
        }
        double duration = 0;
        if (wants_duration && !ctx.input.empty()) {
            duration = probe_duration(ctx.input, workdir_, &running_.stop_flag());
            ctx.duration = duration;
        }

        if (def_.max_pixels && !ctx.input.empty()) {
            if (auto r = check_pixels(ctx.input); !r) return std::unexpected(r.error());
        }
        const auto deadline = std::chrono::steady_clock::now() + def_.timeout;
        const auto& steps = def_.run.steps;
        for (std::size_t i = 0; i < steps.size(); ++i) {
            auto r = run_step(steps[i], i, steps.size(), ctx, duration, deadline);
            if (!r) return std::unexpected(r.error());
        }
        return publish(outputs);
    }

    // logs/{job}/attempt-001.log, -002, ...: numbered by the logs already there, so a job
    // retried with fresh attempts keeps its earlier logs, and names sort in order. A name taken
    // meanwhile (by another worker's attempt, when this one's lease ran out) is never replaced:
    // the log takes the next.
    void keep_log() {
        // The log is capped (max_log_bytes), so it is read whole.
        std::string text;
        {
            std::ifstream in(log_file_, std::ios::binary);
            text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        // A program that printed nothing leaves no log (and no logs/{job}/ directory).
        if (text.empty()) return;
        // Clients download logs: paths in them are made relative to the storage root too.
        if (std::string redacted = relative_to_storage(text); redacted != text) {
            std::ofstream(log_file_, std::ios::binary | std::ios::trunc) << redacted;
        }
        std::error_code ec;
        fs::path dir = storage_.root() / "logs" / job_.id;
        fs::create_directories(dir, ec);
        std::size_t existing = 0;
        for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
             it.increment(ec)) {
            ++existing;
        }
        for (std::size_t n = existing + 1; n <= existing + 100; ++n) {
            const fs::path name = dir / fmt::format("attempt-{:03}.log", n);
            // link(2) fails with EEXIST where rename(2) would replace.
            if (::link(log_file_.c_str(), name.c_str()) == 0 || errno != EEXIST) break;
        }
        fs::remove(log_file_, ec);
    }

  private:
    // What the job's client reads (its error, its logs) shows paths under the storage root
    // relative to it, so it does not reveal the server's layout.
    std::string relative_to_storage(std::string text) const {
        const std::string root = storage_.root().string() + "/";
        for (auto at = text.find(root); at != std::string::npos; at = text.find(root, at)) {
            text.erase(at, root.size());
        }
        return text;
    }

    // The end of a step's output, for the job's error.
    std::string error_tail(const std::string& output) const {
        return relative_to_storage(tail(output, max_error_tail));
    }

    // Reads the image's declared size from its header (no decoding) and refuses images above
    // max_pixels: a permanent failure, since the same file fails every time.
    Result<> check_pixels(const fs::path& input) {
        std::uint64_t size[2] = {0, 0};
        const char* fields[2] = {"width", "height"};
        for (int i = 0; i < 2; ++i) {
            process::ChildSpec spec;
            spec.argv = {"vipsheader", "-f", fields[i], input.string()};
            spec.workdir = workdir_;
            spec.env = child_environment(workdir_);
            spec.timeout = probe_timeout;
            spec.limits.address_space_bytes = probe_address_space_bytes;
            spec.stop = &running_.stop_flag();
            spec.on_stdout_line = [&](std::string_view line) {
                try {
                    size[i] = std::stoull(std::string(line));
                } catch (const std::exception&) {
                }
            };
            auto outcome = process::run_child(spec);
            if (!outcome) return std::unexpected(outcome.error());
            if (!outcome->succeeded() || size[i] == 0) {
                return fail(ErrorCode::invalid_request,
                            "the input is not a readable image: " + error_tail(outcome->log_tail));
            }
        }
        const std::uint64_t pixels = size[0] * size[1];
        if (size[0] > (1ull << 31) || size[1] > (1ull << 31) || pixels > *def_.max_pixels) {
            return fail(ErrorCode::invalid_request,
                        fmt::format("the image is {}x{} ({} pixels), above the limit of {} pixels",
                                    size[0], size[1], pixels, *def_.max_pixels));
        }
        return {};
    }

    Result<> run_step(const converters::RunStep& step, std::size_t index, std::size_t count,
                      const converters::ExpansionContext& ctx, double duration,
                      std::chrono::steady_clock::time_point deadline) {
        auto args = converters::expand_args(step.args, ctx);
        if (!args) return std::unexpected(args.error());
        process::ChildSpec spec;
        spec.argv.push_back(step.program);
        if (def_.run.progress == "ffmpeg") {
            // Reports every 250 ms (ffmpeg's default is 500 ms), as often as the recorder writes
            // progress: a conversion of a second or two still shows its clients a step between
            // 0 and 100.
            for (const char* a : {"-progress", "pipe:1", "-nostats", "-stats_period", "0.25"})
                spec.argv.emplace_back(a);
            // Four reports a second (about 200 bytes each) would fill the 1 MiB log in about 22
            // minutes and push the reason of a late failure out of it; the log keeps ffmpeg's
            // stderr.
            spec.stdout_only_parsed = true;
        }
        spec.argv.insert(spec.argv.end(), args->begin(), args->end());
        spec.workdir = workdir_;
        spec.env = child_environment(workdir_);
        spec.limits.address_space_bytes = limits_.address_space_bytes;
        spec.limits.file_size_bytes =
            std::min(limits_.max_output_bytes, def_.max_output_bytes.value_or(UINT64_MAX));
        spec.limits.open_files = limits_.open_files;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        spec.timeout = std::max(left, std::chrono::milliseconds(1));
        spec.limits.cpu_seconds =
            static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::seconds>(def_.timeout).count()) *
                2 +
            1;
        spec.log_file = log_file_;
        spec.max_log_bytes = limits_.max_log_bytes;
        spec.stop = &running_.stop_flag();

        const int base = static_cast<int>(index * 100 / count);
        const int span = static_cast<int>(100 / count);
        running_.set_progress(base, step.name);
        spec.on_stdout_line = [&](std::string_view line) {
            if (def_.run.progress == "ffmpeg") {
                if (auto p = converters::parse_ffmpeg_progress(line, duration)) {
                    running_.set_progress(std::min(99, base + *p * span / 100), step.name);
                }
            } else if (def_.run.progress == "lines") {
                if (auto p = converters::parse_progress_line(line)) {
                    running_.set_progress(std::min(99, base + p->percent * span / 100),
                                          p->step.empty() ? step.name : p->step);
                }
            }
        };
        auto outcome = process::run_child(spec);
        if (!outcome) {
            return fail(ErrorCode::internal, fmt::format("{}: cannot start {}: {}", step.name,
                                                         step.program, outcome.error().describe()));
        }
        if (outcome->succeeded()) return check_space_after_step(workdir_, step.name);
        const auto [reason, permanent] = judge_failure(*outcome, spec.limits);
        // invalid_request: the input itself cannot be converted, so the job fails at once.
        return fail(permanent ? ErrorCode::invalid_request : ErrorCode::internal,
                    fmt::format("{}: {} {}{}\n{}", step.name, step.program, reason,
                                permanent ? " (not retried: the input cannot be converted)" : "",
                                error_tail(outcome->log_tail)));
    }

    // Why a step failed, in the job's words, and whether another attempt is pointless: an output
    // over the size limit, or output text the definition lists in permanent_errors, comes back
    // the same from the same input.
    std::pair<std::string, bool> judge_failure(const process::ChildOutcome& outcome,
                                               const process::Limits& limits) const {
        if (outcome.timed_out) {
            return {fmt::format("timed out after {} s", def_.timeout.count()), false};
        }
        // The kernel enforces these limits with a signal; name the limit instead.
        if (outcome.term_signal == SIGXFSZ && limits.file_size_bytes) {
            return {fmt::format("was stopped writing a file larger than the limit of {} bytes",
                                *limits.file_size_bytes),
                    true};
        }
        if (outcome.term_signal == SIGXCPU && limits.cpu_seconds) {
            return {fmt::format("used more than its CPU time limit of {} s", *limits.cpu_seconds),
                    false};
        }
        const bool listed =
            !outcome.stopped &&
            std::any_of(def_.run.permanent_errors.begin(), def_.run.permanent_errors.end(),
                        [&](const std::string& text) {
                            return outcome.log_tail.find(text) != std::string::npos;
                        });
        return {outcome.describe(), listed};
    }

    // Moves the outputs into a staging area for results/{job}/ and describes them; a missing or
    // empty output fails the attempt.
    Result<Staged> publish(const std::vector<std::string>& outputs) {
        Staged staged;
        if (outputs.empty()) return staged;
        auto& results = staged.results;
        auto staging = storage_.stage(storage::Area::results, job_.id);
        if (!staging) return std::unexpected(staging.error());
        for (const auto& name : outputs) {
            const fs::path file = workdir_ / name;
            std::error_code ec;
            if (!fs::is_regular_file(fs::symlink_status(file, ec)) ||
                fs::file_size(file, ec) == 0) {
                return fail(ErrorCode::internal,
                            fmt::format("the converter did not produce {}", name));
            }
            auto digest = storage::digest_file(file, magic::head_bytes);
            if (!digest) return std::unexpected(digest.error());
            if (auto r = (*staging)->adopt(file, name); !r) return std::unexpected(r.error());
            jobs::FileRecord record;
            record.name = name;
            record.original_name = name;
            record.size = digest->size;
            record.sha256 = digest->sha256;
            record.content_type = magic_.mime_type(digest->head);
            results.push_back(std::move(record));
        }
        if (!results.empty()) staged.staging = std::move(*staging);
        return staged;
    }

    const converters::Definition& def_;
    RunningJob& running_;
    const jobs::ClaimedJob& job_;
    const storage::Storage& storage_;
    const RunnerLimits& limits_;
    magic::Detector& magic_;
    fs::path workdir_;
    fs::path log_file_;
    std::optional<storage::DirectoryLock> workdir_lock_;
};

// The in-process test converter: waits sleep_ms (or until stopped), fails when asked to.
Result<Staged> run_noop(const jobs::ClaimedJob& job, RunningJob& running) {
    const auto sleep_ms = job.params.value("sleep_ms", 0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(sleep_ms);
    while (std::chrono::steady_clock::now() < until && !running.stop_flag()) {
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            10ms, until - std::chrono::steady_clock::now()));
    }
    if (running.stop_flag()) return fail(ErrorCode::internal, "stopped");
    if (job.params.value("fail", false)) {
        return fail(ErrorCode::internal, "test.noop was asked to fail");
    }
    return Staged{};
}

}  // namespace

jobs::Outcome JobRunner::run(const converters::Definition* def, RunningJob& running) {
    const auto& job = running.job();
    // A claimed job has no results: a results/{job}/ here was published by an earlier attempt
    // whose completion never committed (its lease ran out first). Left, it would hold files
    // without rows until the job is purged.
    Result<Staged> result = Staged{};
    if (auto cleared = storage_.remove_dir(storage::Area::results, job.id); !cleared) {
        result = std::unexpected(cleared.error());
    } else if (def == nullptr) {
        result = fail(ErrorCode::config, "this worker has no converter named " + job.type);
    } else if (def->run.builtin == "noop") {
        result = run_noop(job, running);
    } else if (!def->run.builtin.empty()) {
        result = fail(ErrorCode::config,
                      "this worker has no builtin converter named '" + def->run.builtin + "'");
    } else if (def->run.steps.empty()) {
        result = fail(ErrorCode::config, job.type + " has no [run] section to run");
    } else {
        Attempt attempt(*def, running, storage_, limits_, magic_);
        result = attempt.run();
        attempt.keep_log();
    }

    const auto reason = running.stop_reason();
    if (reason == RunningJob::StopReason::release) {
        return jobs::outcome_of(job, jobs::Outcome::Kind::released);
    }
    if (reason == RunningJob::StopReason::cancel) {
        return jobs::outcome_of(job, jobs::Outcome::Kind::cancelled);
    }
    if (!result) {
        // A broken definition, a converter this worker lacks or an input the converter cannot
        // convert (a permanent_errors match, too many pixels) cannot heal by retrying.
        const bool permanent = result.error().code == ErrorCode::config ||
                               result.error().code == ErrorCode::invalid_request;
        return jobs::failed_attempt(job, result.error().describe(), permanent);
    }
    jobs::Outcome outcome = jobs::outcome_of(job, jobs::Outcome::Kind::completed);
    outcome.results = std::move(result->results);
    if (auto staging = result->staging) {
        outcome.publish = [staging] {
            auto published = staging->commit();
            // Renamed into results/ but not made durable: the completion is recorded as a
            // failure, so the files must not stay behind without rows.
            if (!published) staging->discard_committed();
            return published;
        };
    }
    return outcome;
}

}  // namespace kiln::worker
