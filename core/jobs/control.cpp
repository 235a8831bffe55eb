#include "core/jobs/control.hpp"

#include <fmt/format.h>

#include "core/util/crypto.hpp"

namespace kiln::jobs {
namespace {

// What a retry resets, for one job or many: fresh attempts, due now, no trace of the last run.
constexpr std::string_view retry_reset =
    "status = 'pending', attempts = 0, progress = 0, step = NULL, error = NULL, "
    "cancel_requested = FALSE, run_at = NOW(3), started_at = NULL, finished_at = NULL, "
    "updated_at = NOW(3)";

// The seq and status of a job the viewer can see.
Result<std::optional<std::pair<std::int64_t, std::string>>> visible(db::Connection& conn,
                                                                    const Viewer& viewer,
                                                                    const std::string& id) {
    // Not even asked: the id column takes ASCII only, and other bytes are a collation error.
    if (!util::is_job_id(id)) return std::optional<std::pair<std::int64_t, std::string>>{};
    auto rows = conn.query("SELECT seq, status FROM jobs WHERE id = ? AND (owner = ? OR ?)",
                           {id, viewer.owner, std::int64_t{viewer.admin ? 1 : 0}});
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<std::pair<std::int64_t, std::string>>{};
    return std::optional(std::pair(rows->front().integer(0), rows->front().text(1)));
}

}  // namespace

Result<CancelResult> cancel_job(db::Connection& conn, const Viewer& viewer, const std::string& id) {
    auto job = visible(conn, viewer, id);
    if (!job) return std::unexpected(job.error());
    if (!*job) return fail(ErrorCode::not_found, "no such job");
    const auto seq = (*job)->first;
    // Pending: cancelled at once. The status in the WHERE makes the race with a claim safe:
    // whichever commits first wins, and the loser sees 0 rows.
    auto pending = conn.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = NOW(3), updated_at = NOW(3) "
        "WHERE seq = ? AND status = 'pending'",
        {seq});
    if (!pending) return std::unexpected(pending.error());
    if (*pending == 1) return CancelResult::cancelled;
    auto running = conn.execute(
        "UPDATE jobs SET cancel_requested = TRUE, updated_at = NOW(3) "
        "WHERE seq = ? AND status = 'running'",
        {seq});
    if (!running) return std::unexpected(running.error());
    if (*running == 1) return CancelResult::cancelling;
    auto now = visible(conn, viewer, id);
    const std::string status = now && *now ? (*now)->second : "finished";
    return fail(ErrorCode::conflict, "the job is " + status + " and cannot be cancelled");
}

Result<> retry_job(db::Connection& conn, const Viewer& viewer, const std::string& id) {
    auto job = visible(conn, viewer, id);
    if (!job) return std::unexpected(job.error());
    if (!*job) return fail(ErrorCode::not_found, "no such job");
    static const std::string sql = fmt::format(
        "UPDATE jobs SET {} WHERE seq = ? AND status IN ('failed', 'cancelled')", retry_reset);
    auto affected = conn.execute(sql, {(*job)->first});
    if (!affected) return std::unexpected(affected.error());
    if (*affected == 0) {
        return fail(ErrorCode::conflict,
                    "the job is " + (*job)->second + "; only failed or cancelled jobs are retried");
    }
    return {};
}

Result<std::uint64_t> retry_failed(db::Connection& conn, const std::string& type,
                                   std::optional<std::chrono::seconds> window) {
    static const std::string sql = fmt::format(
        "UPDATE jobs SET {} WHERE status = 'failed' AND type = ? "
        "AND (? OR finished_at >= NOW(3) - INTERVAL ? SECOND)",
        retry_reset);
    return conn.execute(sql, {type, std::int64_t{window ? 0 : 1},
                              std::int64_t{window.value_or(std::chrono::seconds{0}).count()}});
}

Result<std::uint64_t> reap_expired_leases(db::Connection& conn) {
    // GET_LOCK with no wait: if another reaper holds it, this one skips its turn.
    auto lock = conn.query("SELECT GET_LOCK('kiln.reaper', 0)");
    if (!lock) return std::unexpected(lock.error());
    if (lock->empty() || lock->front().integer(0) != 1) return 0;
    // The attempt was counted when it was claimed.
    auto reaped = conn.execute(
        "UPDATE jobs SET "
        "status = CASE WHEN cancel_requested THEN 'cancelled' "
        "WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, "
        "error = CONCAT('lease expired: worker ', COALESCE(worker, '?'), "
        "' stopped renewing it (crashed, killed or cut off)'), "
        "finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN NOW(3) "
        "ELSE NULL END, "
        "worker = NULL, lease_token = NULL, lease_expires_at = NULL, progress = 0, step = NULL, "
        "run_at = NOW(3), updated_at = NOW(3) "
        "WHERE status = 'running' AND lease_expires_at < NOW(3) LIMIT 500");
    (void)conn.query("SELECT RELEASE_LOCK('kiln.reaper')");
    return reaped;
}

Result<std::vector<std::uint64_t>> cancel_requests(db::Connection& conn,
                                                   const std::string& worker) {
    auto rows = conn.query(
        "SELECT seq FROM jobs WHERE status = 'running' AND worker = ? AND cancel_requested",
        {worker});
    if (!rows) return std::unexpected(rows.error());
    std::vector<std::uint64_t> out;
    for (const auto& row : *rows) out.push_back(static_cast<std::uint64_t>(row.integer(0)));
    return out;
}

}  // namespace kiln::jobs
