#include "core/jobs/queue.hpp"

#include <algorithm>
#include <iterator>
#include <random>
#include <utility>

#include <fmt/format.h>

#include "core/storage/file_name.hpp"
#include "core/util/crypto.hpp"

namespace kiln::jobs {
namespace {

constexpr int max_claim_batch = 64;
constexpr int max_transaction_tries = 5;
// A converter's output is any bytes: what of it goes into the job row is cut to these sizes and
// made valid UTF-8 (MariaDB refuses invalid text, which would leave the outcome unrecorded).
constexpr std::size_t max_error_bytes = 16384;
constexpr std::size_t max_step_bytes = 128;

// "?, ?, ?" for an IN list of n binds; each size is its own prepared statement.
std::string placeholders(std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += i == 0 ? "?" : ", ?";
    return out;
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) {
        if (!out.empty()) out += ',';
        out += s;
    }
    return out;
}

// Runs `body` in a transaction, repeating it on deadlock or lock wait timeout.
template <typename Body>
auto in_transaction(db::Connection& conn, Body&& body) -> decltype(body()) {
    for (int attempt = 1;; ++attempt) {
        if (auto r = conn.begin(); !r) return std::unexpected(r.error());
        auto result = body();
        if (result) {
            if (auto c = conn.commit(); c)
                return result;
            else
                result = std::unexpected(c.error());
        }
        conn.rollback();
        if (!db::is_retryable(result.error()) || attempt >= max_transaction_tries) return result;
    }
}

// A running job back to pending, no longer anyone's. One whose cancel was asked for (and
// acknowledged) while it ran ends cancelled instead: back in the queue it would run again, and
// no worker looks at the flag of a pending job.
constexpr std::string_view back_to_queue =
    "status = IF(cancel_requested, 'cancelled', 'pending'), "
    "finished_at = IF(cancel_requested, NOW(3), finished_at), progress = 0, step = NULL, "
    "worker = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = NOW(3)";

// back_to_queue as if never claimed: the attempt is not counted.
const std::string hand_back_to_queue =
    fmt::format("{}, attempts = GREATEST(attempts, 1) - 1", back_to_queue);

// What a claim reads of each job, then the claim order's keys: priority (7) and run_at (8).
constexpr std::string_view claim_columns =
    "seq, id, owner, type, params, attempts, max_attempts, priority, run_at";

// Sorts rows as the claim index orders jobs: priority descending, then run_at (text of the
// form 'YYYY-MM-DD HH:MM:SS.mmm', which sorts as the time does), then seq.
void sort_in_claim_order(std::vector<db::Row>& rows, std::size_t seq, std::size_t priority,
                         std::size_t run_at) {
    std::sort(rows.begin(), rows.end(), [&](const db::Row& a, const db::Row& b) {
        if (a.integer(priority) != b.integer(priority))
            return a.integer(priority) > b.integer(priority);
        if (a.text(run_at) != b.text(run_at)) return a.text(run_at) < b.text(run_at);
        return a.integer(seq) < b.integer(seq);
    });
}

// The ordered read of the claim index stops after this many entries. Most claims find their
// jobs among the first few; a worker that runs only some types can find the head of the queue
// full of other types' jobs, and reading past all of them on every claim would cost in
// proportion to that backlog (177-282 ms per claim behind a million jobs on the development
// VM, 1.1 ms with the bound).
constexpr int ordered_read_bound = 256;

// The due jobs of `types` in claim order, up to `limit`, locked, found through each type's own
// stretch of jobs_claim_type. Candidates are read without locks (a few per type), ordered
// here, and only the first `limit` are locked: locking every type's head would hold jobs this
// claim does not take, which other workers would then skip. A candidate another claim took
// meanwhile is skipped, and the next ones are tried.
Result<std::vector<db::Row>> lock_due_jobs_by_type(db::Connection& conn,
                                                   const std::vector<std::string>& types,
                                                   std::int64_t limit) {
    const std::int64_t per_type = 2 * limit + 8;
    std::string sql;
    std::vector<db::Value> binds;
    for (const auto& type : types) {
        if (!sql.empty()) sql += " UNION ALL ";
        sql +=
            "(SELECT seq, priority, run_at FROM jobs FORCE INDEX (jobs_claim_type) "
            "WHERE status = 'pending' AND type = ? AND run_at <= NOW(3) "
            "ORDER BY priority DESC, run_at, seq LIMIT ?)";
        binds.emplace_back(type);
        binds.emplace_back(per_type);
    }
    auto stmt = conn.prepare(sql);
    if (!stmt) return std::unexpected(stmt.error());
    auto candidates = (*stmt)->query(binds);
    if (!candidates) return std::unexpected(candidates.error());
    sort_in_claim_order(*candidates, 0, 1, 2);

    std::vector<db::Row> locked;
    auto next = candidates->begin();
    while (std::cmp_less(locked.size(), limit) && next != candidates->end()) {
        const auto want = std::min<std::ptrdiff_t>(limit - static_cast<std::int64_t>(locked.size()),
                                                   candidates->end() - next);
        std::vector<db::Value> seqs;
        for (auto it = next; it != next + want; ++it) seqs.emplace_back(it->integer(0));
        next += want;
        // By primary key, no ORDER BY or LIMIT: only these rows are read and locked.
        auto lock = conn.prepare(fmt::format(
            "SELECT {} FROM jobs FORCE INDEX (PRIMARY) WHERE seq IN ({}) AND status = 'pending' "
            "AND run_at <= NOW(3) FOR UPDATE SKIP LOCKED",
            claim_columns, placeholders(seqs.size())));
        if (!lock) return std::unexpected(lock.error());
        auto rows = (*lock)->query(seqs);
        if (!rows) return std::unexpected(rows.error());
        std::move(rows->begin(), rows->end(), std::back_inserter(locked));
    }
    sort_in_claim_order(locked, 0, 7, 8);
    return locked;
}

// Up to `limit` due jobs of `types` (empty: any type) in claim order, locked for this
// transaction; jobs that other claims hold are skipped.
Result<std::vector<db::Row>> lock_due_jobs(db::Connection& conn,
                                           const std::vector<std::string>& types,
                                           std::int64_t limit) {
    static const std::string sql = fmt::format(
        "SELECT {} FROM jobs WHERE status = 'pending' AND run_at <= NOW(3) AND "
        "(? = '' OR FIND_IN_SET(type, ?) > 0) ORDER BY priority DESC, run_at, seq "
        "LIMIT ? ROWS EXAMINED {} FOR UPDATE SKIP LOCKED",
        claim_columns, ordered_read_bound);
    const std::string type_list = join(types);
    auto rows = conn.query(sql, {type_list, type_list, limit});
    if (!rows) return std::unexpected(rows.error());
    if (std::cmp_equal(rows->size(), limit) || types.empty()) return rows;
    // Fewer jobs than asked: either no more are due, or the bound cut the read short (MariaDB
    // then notes a warning) and the rest must be found type by type.
    if (conn.warning_count() == 0) return rows;
    return lock_due_jobs_by_type(conn, types, limit);
}

Result<std::vector<ClaimedJob>> claim_once(db::Connection& conn, const ClaimRequest& request) {
    auto rows = lock_due_jobs(conn, request.types,
                              std::int64_t{std::clamp(request.max_jobs, 1, max_claim_batch)});
    if (!rows) return std::unexpected(rows.error());
    std::vector<ClaimedJob> jobs;
    if (rows->empty()) return jobs;

    const std::string lease = request.lease_token.empty() ? new_lease_token() : request.lease_token;
    std::vector<db::Value> binds = {request.worker, lease, std::int64_t{request.lease.count()}};
    for (const auto& row : *rows) {
        ClaimedJob job;
        job.seq = static_cast<std::uint64_t>(row.integer(0));
        job.id = row.text(1);
        job.owner = row.text(2);
        job.type = row.text(3);
        job.params = nlohmann::json::parse(row.text(4), nullptr, false);
        job.attempt = static_cast<int>(row.integer(5)) + 1;
        job.max_attempts = static_cast<int>(row.integer(6));
        job.lease_token = lease;
        binds.emplace_back(static_cast<std::int64_t>(job.seq));
        jobs.push_back(std::move(job));
    }
    const std::string update = fmt::format(
        "UPDATE jobs SET status = 'running', worker = ?, lease_token = ?, "
        "lease_expires_at = NOW(3) + INTERVAL ? SECOND, attempts = attempts + 1, progress = 0, "
        "step = NULL, started_at = COALESCE(started_at, NOW(3)), updated_at = NOW(3) "
        "WHERE seq IN ({})",
        placeholders(jobs.size()));
    auto stmt = conn.prepare(update);
    if (!stmt) return std::unexpected(stmt.error());
    if (auto r = (*stmt)->execute(binds); !r) return std::unexpected(r.error());

    const std::string files_sql = fmt::format(
        "SELECT job_seq, name, original_name, size, content_type, sha256 FROM job_files "
        "WHERE kind = 'source' AND job_seq IN ({}) ORDER BY job_seq, ordinal, name",
        placeholders(jobs.size()));
    auto files_stmt = conn.prepare(files_sql);
    if (!files_stmt) return std::unexpected(files_stmt.error());
    std::vector<db::Value> seqs(binds.begin() + 3, binds.end());
    auto files = (*files_stmt)->query(seqs);
    if (!files) return std::unexpected(files.error());
    for (const auto& row : *files) {
        auto seq = static_cast<std::uint64_t>(row.integer(0));
        auto it =
            std::find_if(jobs.begin(), jobs.end(), [&](const auto& j) { return j.seq == seq; });
        if (it == jobs.end()) continue;
        FileRecord f;
        f.name = row.text(1);
        f.original_name = row.text(2);
        f.size = static_cast<std::uint64_t>(row.integer(3));
        f.content_type = row.text(4);
        f.sha256 = row.text(5);
        it->sources.push_back(std::move(f));
    }
    return jobs;
}

Result<bool> record_failure(db::Connection& conn, const Outcome& o, std::string_view reason) {
    const auto seq = static_cast<std::int64_t>(o.seq);
    const std::string error = storage::to_valid_utf8(reason, max_error_bytes);
    Result<std::uint64_t> affected = 0;
    // A cancel asked for while the attempt ran wins over its failure: the job ends cancelled
    // (with the attempt's error kept), never back in the queue to run again. The worker checks
    // for cancels every half second, so a short attempt can fail before it sees one.
    if (!o.permanent && o.attempt < o.max_attempts) {
        static const std::string retry_sql = fmt::format(
            "UPDATE jobs SET {}, error = ?, "
            "run_at = IF(cancel_requested, run_at, NOW(3) + INTERVAL ? MICROSECOND) "
            "WHERE seq = ? AND lease_token = ? AND status = 'running'",
            back_to_queue);
        affected = conn.execute(
            retry_sql, {error, std::int64_t{o.retry_delay.count() * 1000}, seq, o.lease_token});
    } else {
        affected = conn.execute(
            "UPDATE jobs SET status = IF(cancel_requested, 'cancelled', 'failed'), error = ?, "
            "step = NULL, worker = NULL, lease_token = NULL, lease_expires_at = NULL, "
            "finished_at = NOW(3), updated_at = NOW(3) "
            "WHERE seq = ? AND lease_token = ? AND status = 'running'",
            {error, seq, o.lease_token});
    }
    if (!affected) return std::unexpected(affected.error());
    return *affected > 0;
}

Result<bool> record_completion(db::Connection& conn, const Outcome& o) {
    const auto seq = static_cast<std::int64_t>(o.seq);
    // Lock the row under our lease first: only the lease holder may publish results.
    auto held = conn.query(
        "SELECT seq FROM jobs WHERE seq = ? AND lease_token = ? AND status = 'running' FOR UPDATE",
        {seq, o.lease_token});
    if (!held) return std::unexpected(held.error());
    if (held->empty()) return false;
    if (o.publish) {
        if (auto r = o.publish(); !r) {
            return record_failure(conn, o,
                                  "publishing the results failed: " + r.error().describe());
        }
    }
    auto affected = conn.execute(
        "UPDATE jobs SET status = 'completed', progress = 100, step = NULL, error = NULL, "
        "worker = NULL, lease_token = NULL, lease_expires_at = NULL, "
        "finished_at = NOW(3), updated_at = NOW(3) WHERE seq = ?",
        {seq});
    if (!affected) return std::unexpected(affected.error());
    std::int64_t ordinal = 0;
    for (const auto& f : o.results) {
        auto r = conn.execute(
            "INSERT INTO job_files (job_seq, kind, name, original_name, size, content_type, "
            "sha256, created_at, ordinal) VALUES (?, 'result', ?, ?, ?, ?, ?, NOW(3), ?) "
            "ON DUPLICATE KEY UPDATE size = VALUES(size), content_type = VALUES(content_type), "
            "sha256 = VALUES(sha256), created_at = VALUES(created_at)",
            {seq, f.name, f.original_name, static_cast<std::int64_t>(f.size), f.content_type,
             f.sha256, ordinal++});
        if (!r) return std::unexpected(r.error());
    }
    return true;
}

Result<bool> record_one(db::Connection& conn, const Outcome& o) {
    const auto seq = static_cast<std::int64_t>(o.seq);
    Result<std::uint64_t> affected = 0;
    switch (o.kind) {
        case Outcome::Kind::completed:
            return record_completion(conn, o);
        case Outcome::Kind::failed:
            return record_failure(conn, o, o.error);
        case Outcome::Kind::cancelled:
            affected = conn.execute(
                "UPDATE jobs SET status = 'cancelled', step = NULL, worker = NULL, "
                "lease_token = NULL, lease_expires_at = NULL, finished_at = NOW(3), "
                "updated_at = NOW(3) WHERE seq = ? AND lease_token = ? AND status = 'running'",
                {seq, o.lease_token});
            break;
        case Outcome::Kind::released: {
            static const std::string sql = fmt::format(
                "UPDATE jobs SET {} WHERE seq = ? AND lease_token = ? AND status = 'running'",
                hand_back_to_queue);
            affected = conn.execute(sql, {seq, o.lease_token});
            break;
        }
    }
    if (!affected) return std::unexpected(affected.error());
    return *affected > 0;
}

}  // namespace

std::string new_lease_token() { return util::sha256_hex(util::random_bytes(16)).substr(0, 32); }

Result<std::vector<ClaimedJob>> claim_jobs(db::Connection& conn, const ClaimRequest& request) {
    return in_transaction(conn, [&] { return claim_once(conn, request); });
}

Result<std::uint64_t> release_claim(db::Connection& conn, const std::string& lease_token) {
    // Read through jobs_lease: the running jobs of every worker. A job of the lease is locked
    // while the COMMIT that claimed it is still being applied; past a short wait the caller
    // keeps the token and tries again before its next claim (a lock wait error, retryable).
    static const std::string sql = fmt::format(
        "SET STATEMENT innodb_lock_wait_timeout = 2 FOR "
        "UPDATE jobs SET {} WHERE status = 'running' AND lease_token = ?",
        hand_back_to_queue);
    return conn.execute(sql, {lease_token});
}

Result<bool> renew_lease(db::Connection& conn, std::uint64_t seq, const std::string& lease,
                         std::chrono::seconds lease_length) {
    auto affected = conn.execute(
        "UPDATE jobs SET lease_expires_at = NOW(3) + INTERVAL ? SECOND "
        "WHERE seq = ? AND lease_token = ? AND status = 'running'",
        {std::int64_t{lease_length.count()}, static_cast<std::int64_t>(seq), lease});
    if (!affected) return std::unexpected(affected.error());
    return *affected > 0;
}

Result<bool> record_progress(db::Connection& conn, std::uint64_t seq, const std::string& lease,
                             int progress, const std::string& step) {
    auto affected = conn.execute(
        "UPDATE jobs SET progress = ?, step = ?, updated_at = NOW(3) "
        "WHERE seq = ? AND lease_token = ? AND status = 'running'",
        {std::int64_t{std::clamp(progress, 0, 100)},
         step.empty() ? db::Value(nullptr)
                      : db::Value(storage::to_valid_utf8(step, max_step_bytes)),
         static_cast<std::int64_t>(seq), lease});
    if (!affected) return std::unexpected(affected.error());
    return *affected > 0;
}

Result<std::vector<bool>> record_outcomes(db::Connection& conn,
                                          const std::vector<Outcome>& outcomes) {
    return in_transaction(conn, [&]() -> Result<std::vector<bool>> {
        std::vector<bool> applied;
        applied.reserve(outcomes.size());
        for (const auto& o : outcomes) {
            auto r = record_one(conn, o);
            if (!r) return std::unexpected(r.error());
            applied.push_back(*r);
        }
        return applied;
    });
}

std::chrono::milliseconds retry_delay(int attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap) {
    const int doublings = std::clamp(attempt - 1, 0, 20);
    const std::chrono::milliseconds delay = std::min<std::chrono::milliseconds>(
        cap, std::chrono::milliseconds(base.count() << doublings));
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter(rng)));
}

Outcome outcome_of(const ClaimedJob& job, Outcome::Kind kind) {
    Outcome o;
    o.kind = kind;
    o.seq = job.seq;
    o.id = job.id;
    o.lease_token = job.lease_token;
    o.attempt = job.attempt;
    o.max_attempts = job.max_attempts;
    return o;
}

Outcome failed_attempt(const ClaimedJob& job, std::string error, bool permanent) {
    Outcome o = outcome_of(job, Outcome::Kind::failed);
    o.error = std::move(error);
    o.permanent = permanent;
    if (permanent && o.error.find("not retried") == std::string::npos) o.error += " (not retried)";
    o.retry_delay = retry_delay(job.attempt, std::chrono::seconds(2), std::chrono::minutes(5));
    return o;
}

}  // namespace kiln::jobs
