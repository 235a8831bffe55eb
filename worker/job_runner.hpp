#pragma once
// Running one claimed job: its converter's steps as child processes (or an in-process builtin)
// in a private work directory, then its outputs moved into results/{job}/ with size, type and
// SHA-256 recorded. Produces the Outcome the recorder writes; never touches the database.

#include <atomic>
#include <functional>
#include <mutex>
#include <string>

#include "core/converters/definition.hpp"
#include "core/jobs/queue.hpp"
#include "core/magic/detector.hpp"
#include "core/storage/storage.hpp"

namespace kiln::worker {

// What the recorder and the dispatcher can see and do about a job while it runs.
class RunningJob {
  public:
    explicit RunningJob(jobs::ClaimedJob job) : job_(std::move(job)) {}
    const jobs::ClaimedJob& job() const { return job_; }

    enum class StopReason { none, release, cancel };

    // Stops the job: the child process group is killed. release puts the job back to pending
    // (shutdown, lost lease) without counting the attempt; cancel ends it cancelled.
    void stop(StopReason reason) {
        reason_ = reason;
        stop_ = true;
    }
    const std::atomic<bool>& stop_flag() const { return stop_; }
    StopReason stop_reason() const { return reason_; }

    void set_progress(int percent, const std::string& step);
    // The progress to write, if it changed since the last call.
    bool take_progress(int& percent, std::string& step);

  private:
    jobs::ClaimedJob job_;
    std::atomic<bool> stop_{false};
    std::atomic<StopReason> reason_{StopReason::none};
    std::mutex mutex_;
    int percent_ = 0;
    std::string step_;
    bool dirty_ = false;
};

struct RunnerLimits {
    std::uint64_t max_log_bytes = 1 << 20;
    std::uint64_t address_space_bytes = 8ull << 30;
    std::uint64_t max_output_bytes = 8ull << 30;
    std::uint64_t open_files = 256;
};

class JobRunner {
  public:
    JobRunner(const storage::Storage& storage, RunnerLimits limits, magic::Detector& magic)
        : storage_(storage), limits_(limits), magic_(magic) {}

    // Runs the job to an outcome (completed, failed with a readable reason, or released when
    // stopped for release). `def` is null when the worker no longer knows the job's type.
    jobs::Outcome run(const converters::Definition* def, RunningJob& running);

  private:
    const storage::Storage& storage_;
    RunnerLimits limits_;
    magic::Detector& magic_;
};

}  // namespace kiln::worker
