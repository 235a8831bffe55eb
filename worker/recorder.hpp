#pragma once
// The worker's one writer after the claim: it records outcomes in batches (one durable commit
// for many jobs), writes progress at most every 250 ms per job, and renews the leases of running
// jobs. While the database is down it keeps everything in memory and retries with back-off, so
// a job that finished during an outage is recorded once the database is back. It also watches
// for cancellations of its jobs (twice a second) and reaps other workers' expired leases.

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/jobs/queue.hpp"
#include "worker/job_runner.hpp"

namespace kiln::worker {

class Recorder {
  public:
    Recorder(DatabaseConfig db, std::string worker, std::chrono::seconds lease);
    ~Recorder();

    void start();
    // Records what is queued, then stops. Gives up on the database after `patience`.
    void finish(std::chrono::seconds patience);

    void track(std::shared_ptr<RunningJob> job);
    void submit(jobs::Outcome outcome);  // also stops tracking the job
    // Outcomes not yet recorded (for tests and status).
    std::size_t backlog() const;

  private:
    void loop();
    std::chrono::milliseconds renewal_interval() const;
    // A snapshot of the tracked jobs, taken under the lock, used outside it.
    std::vector<std::shared_ptr<RunningJob>> running_jobs() const;
    // Records the queued outcomes; false when the database is unavailable (they stay queued).
    bool record_batch();
    bool record_one_by_one(std::vector<jobs::Outcome> batch);
    // Puts a batch the database could not take back at the front of the queue.
    void requeue(std::vector<jobs::Outcome> batch, const Error& error);
    void write_progress();
    void renew_leases();
    void check_cancellations();
    void reap();

    db::Session session_;
    std::string worker_;
    std::chrono::seconds lease_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<jobs::Outcome> outcomes_;
    std::map<std::uint64_t, std::shared_ptr<RunningJob>> running_;
    bool finishing_ = false;
    std::chrono::steady_clock::time_point give_up_at_{};
    std::thread thread_;
};

}  // namespace kiln::worker
