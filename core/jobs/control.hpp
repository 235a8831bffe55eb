#pragma once
// What clients and admins do to jobs after creating them: cancel and retry. Each is one
// conditional UPDATE on the job's current status, so it cannot race a worker's own transitions.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "core/db/mariadb.hpp"
#include "core/jobs/repository.hpp"
#include "core/result.hpp"

namespace kiln::jobs {

enum class CancelResult {
    cancelled,   // it was pending: cancelled at once
    cancelling,  // it is running: its worker kills it within about a second
};

// Fails with not_found for a job the viewer cannot see, conflict for a finished one.
Result<CancelResult> cancel_job(db::Connection& conn, const Viewer& viewer, const std::string& id);

// Puts a failed or cancelled job back to pending with fresh attempts. Fails with not_found or,
// for any other status, conflict.
Result<> retry_job(db::Connection& conn, const Viewer& viewer, const std::string& id);

// kilnctl retry --type T [--failed-since D]: every failed job of `type` (that failed within the
// last `window`, when given); the number put back.
Result<std::uint64_t> retry_failed(db::Connection& conn, const std::string& type,
                                   std::optional<std::chrono::seconds> window);

// Returns running jobs whose lease expired (their worker stopped renewing it: crashed, killed,
// cut off) to pending, or to failed when their attempts are used up, or to cancelled when a
// cancel was asked. One reaper at a time (a named lock); the number of jobs reaped.
Result<std::uint64_t> reap_expired_leases(db::Connection& conn);

// Running jobs of `worker` whose cancellation was asked for.
Result<std::vector<std::uint64_t>> cancel_requests(db::Connection& conn, const std::string& worker);

}  // namespace kiln::jobs
