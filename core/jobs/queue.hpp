#pragma once
// The worker's side of the jobs table: claiming due jobs with SELECT ... FOR UPDATE SKIP LOCKED
// under a lease, and recording what became of them. Every write after the claim is conditional
// on the lease token it holds (WHERE seq = ? AND lease_token = ?), so a worker whose lease was
// taken over can never overwrite the new owner's state: those writes report lease_lost.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/db/mariadb.hpp"
#include "core/jobs/job.hpp"
#include "core/result.hpp"

namespace kiln::jobs {

struct ClaimedJob {
    std::uint64_t seq = 0;
    std::string id;
    std::string owner;
    std::string type;
    nlohmann::json params;
    int attempt = 1;  // this attempt's number, 1-based
    int max_attempts = 1;
    std::string lease_token;
    std::vector<FileRecord> sources;
};

struct ClaimRequest {
    std::string worker;              // recorded on the row
    std::vector<std::string> types;  // empty: any type
    int max_jobs = 1;                // at most 64
    std::chrono::seconds lease{30};
    // The claimed jobs' lease token; empty: a new one. A caller that chooses it can hand back
    // the jobs of a claim whose COMMIT got no answer (release_claim).
    std::string lease_token;
};

// A new random lease token (32 hex digits).
std::string new_lease_token();

// Claims up to max_jobs due pending jobs in priority order (premium first, then oldest) in one
// short READ COMMITTED transaction, marking them running under a new lease. Retries deadlocks
// and lock wait timeouts itself; fails with unavailable when the database is down.
Result<std::vector<ClaimedJob>> claim_jobs(db::Connection& conn, const ClaimRequest& request);

// Hands the jobs claimed under `lease_token` back to pending with their attempt not counted,
// as if never claimed: for a claim that failed with its outcome unknown (the connection broke
// at COMMIT, which may have been applied), whose jobs would otherwise wait out their lease.
// Returns how many were handed back. Waits at most 2 s for a job's lock (the claiming COMMIT
// may still be being applied), then fails with a retryable lock wait error (db::is_retryable).
Result<std::uint64_t> release_claim(db::Connection& conn, const std::string& lease_token);

// Extends the lease; false when it was lost (the job is no longer this worker's).
Result<bool> renew_lease(db::Connection& conn, std::uint64_t seq, const std::string& lease,
                         std::chrono::seconds lease_length);

// Progress 0..100 and the current step (bounded to 128 bytes); false when the lease was lost.
Result<bool> record_progress(db::Connection& conn, std::uint64_t seq, const std::string& lease,
                             int progress, const std::string& step);

// What became of one attempt.
struct Outcome {
    enum class Kind { completed, failed, released, cancelled };
    Kind kind = Kind::completed;
    std::uint64_t seq = 0;
    std::string id;
    std::string lease_token;
    std::vector<FileRecord> results;  // completed
    // completed: publishes the staged result files (results/{job}/). Called inside the
    // recording transaction after the lease was checked and the row locked, so only the lease
    // holder ever writes the results directory. Must be idempotent (a batch may be retried).
    std::function<Result<>()> publish;
    std::string error;       // failed: a readable reason with the log tail
    bool permanent = false;  // failed: retrying cannot help
    int attempt = 1;
    int max_attempts = 1;
    std::chrono::milliseconds retry_delay{0};  // failed with attempts left: back-off
};

// Records several outcomes in one transaction (one durable commit for the batch). Completed:
// results published, result rows inserted, status completed (a publish that fails turns into a
// failed attempt). Cancelled: status cancelled. Failed: back to pending after retry_delay while
// attempts are left and the error is not permanent, else failed for good. Released: back to
// pending at once, the attempt not counted. Returns, for each outcome in order, whether it was
// applied (false: the lease was lost and nothing was written for it).
Result<std::vector<bool>> record_outcomes(db::Connection& conn,
                                          const std::vector<Outcome>& outcomes);

// Exponential back-off from `base` doubling per attempt, capped, with +-20% jitter.
std::chrono::milliseconds retry_delay(int attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap);

// An outcome of `job`, with what every outcome carries: which job, under which lease, which
// attempt.
Outcome outcome_of(const ClaimedJob& job, Outcome::Kind kind);

// A failed attempt of `job`: retried after a back-off (2 s doubling up to 5 min) while attempts
// are left, unless `permanent`, whose error then says "not retried" (the words clients look for).
Outcome failed_attempt(const ClaimedJob& job, std::string error, bool permanent);

}  // namespace kiln::jobs
