#include "core/jobs/repository.hpp"

#include <charconv>
#include <ctime>
#include <limits>

#include <fmt/format.h>

#include "core/util/crypto.hpp"
#include "core/util/time.hpp"

namespace kiln::jobs {
namespace {

// Column list shared by every job query; read_job() depends on this order.
constexpr std::string_view job_columns =
    "seq, id, owner, type, status, priority, params, progress, step, attempts, max_attempts, "
    "error, created_at, started_at, finished_at, updated_at, run_at, cancel_requested";
constexpr std::size_t job_column_count = 18;

// job_columns with each name prefixed by `alias.` (for joins).
std::string qualified_job_columns(char alias) {
    std::string out;
    std::string_view rest = job_columns;
    while (!rest.empty()) {
        auto comma = rest.find(", ");
        if (!out.empty()) out += ", ";
        out += alias;
        out += '.';
        out += rest.substr(0, comma);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 2);
    }
    return out;
}

std::optional<std::string> rfc3339(const std::optional<std::string>& sql) {
    if (!sql) return std::nullopt;
    return util::sql_datetime_to_rfc3339(*sql);
}

Job read_job(const db::Row& row) {
    Job job;
    job.seq = static_cast<std::uint64_t>(row.integer(0));
    job.id = row.text(1);
    job.owner = row.text(2);
    job.type = row.text(3);
    job.status = parse_status(row.text(4)).value_or(JobStatus::pending);
    job.priority = static_cast<int>(row.integer(5));
    job.params = nlohmann::json::parse(row.text(6), nullptr, false);
    if (job.params.is_discarded()) job.params = nlohmann::json::object();
    job.progress = static_cast<int>(row.integer(7));
    job.step = row.optional_text(8);
    job.attempts = static_cast<int>(row.integer(9));
    job.max_attempts = static_cast<int>(row.integer(10));
    job.error = row.optional_text(11);
    job.created_at = rfc3339(row.optional_text(12)).value_or("");
    job.started_at = rfc3339(row.optional_text(13));
    job.finished_at = rfc3339(row.optional_text(14));
    job.updated_at = rfc3339(row.optional_text(15)).value_or("");
    job.run_at = rfc3339(row.optional_text(16)).value_or("");
    job.cancel_requested = row.integer(17) != 0;
    return job;
}

FileRecord read_file(const db::Row& row, std::size_t first) {
    FileRecord f;
    f.name = row.text(first);
    f.original_name = row.text(first + 1);
    f.size = static_cast<std::uint64_t>(row.integer(first + 2));
    f.content_type = row.text(first + 3);
    f.sha256 = row.text(first + 4);
    return f;
}

// row, from column `first`: kind, name, original_name, size, content_type, sha256
void attach_file(Job& job, const db::Row& row, std::size_t first = 0) {
    (row.text(first) == "source" ? job.sources : job.results).push_back(read_file(row, first + 1));
}

Result<std::int64_t> queue_position(db::Connection& conn, int priority,
                                    const std::string& run_at_sql, std::uint64_t seq,
                                    std::int64_t cap) {
    // Jobs that a worker would claim before this one: higher priority, or same priority and
    // earlier in (run_at, seq). That is one stretch of the jobs_claim index (MariaDB reads it as
    // three ranges), and reading stops at the cap: an uncapped count grows with the queue, and
    // a POST must not get slower because many jobs are waiting. The index hint spares the
    // planner weighing the other indexes: a fifth of the statement's cost at the queue's head.
    static const std::string sql =
        "SELECT COUNT(*) FROM (SELECT 1 FROM jobs FORCE INDEX (jobs_claim) WHERE "
        "status = 'pending' AND (priority > ? OR "
        "(priority = ? AND (run_at < ? OR (run_at = ? AND seq < ?)))) LIMIT ?) ahead";
    const std::int64_t p = priority;
    auto rows =
        conn.query(sql, {p, p, run_at_sql, run_at_sql, static_cast<std::int64_t>(seq), cap});
    if (!rows) return std::unexpected(rows.error());
    return rows->empty() ? 0 : rows->front().integer(0);
}

// Builds the job from rows of its columns then its file columns (one row per file, or one row
// of NULL file columns), and counts a pending job's position in the queue.
Result<Job> job_from_rows(db::Connection& conn, const std::vector<db::Row>& rows,
                          std::int64_t position_cap) {
    Job job = read_job(rows.front());
    for (const auto& row : rows) {
        if (!row.is_null(job_column_count)) attach_file(job, row, job_column_count);
    }
    if (job.status == JobStatus::pending) {
        auto position =
            queue_position(conn, job.priority, rows.front().text(16), job.seq, position_cap);
        if (!position) return std::unexpected(position.error());
        job.position_in_queue = *position;
    }
    return job;
}

constexpr std::string_view file_columns =
    "f.kind, f.name, f.original_name, f.size, f.content_type, f.sha256";

}  // namespace

std::string sql_timestamp(std::int64_t ms) {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

Result<Job> create_job(db::Connection& conn, const NewJob& in, std::int64_t position_cap) {
    const auto now = util::now_ms();
    const std::string ts = sql_timestamp(now);
    if (auto r = conn.begin(); !r) return std::unexpected(r.error());
    auto rollback_on_error = [&](const Error& e) {
        conn.rollback();
        return std::unexpected(e);
    };
    auto insert = conn.prepare(
        "INSERT INTO jobs (id, owner, type, status, priority, params, max_attempts, run_at, "
        "created_at, updated_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)");
    if (!insert) return rollback_on_error(insert.error());
    const db::Value values[] = {in.id,
                                in.owner,
                                in.type,
                                std::int64_t{in.priority},
                                in.params.dump(),
                                std::int64_t{in.max_attempts},
                                ts,
                                ts,
                                ts};
    if (auto r = (*insert)->execute(values); !r) return rollback_on_error(r.error());
    const auto seq = static_cast<std::int64_t>((*insert)->last_insert_id());

    if (!in.idempotency_key.empty()) {
        // A key older than 24 h is free again.
        auto stale = conn.execute(
            "DELETE FROM idempotency_keys WHERE owner = ? AND idem_key = ? AND "
            "created_at < NOW(3) - INTERVAL 24 HOUR",
            {in.owner, in.idempotency_key});
        if (!stale) return rollback_on_error(stale.error());
        auto key = conn.execute(
            "INSERT INTO idempotency_keys (owner, idem_key, request_sha256, job_seq, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            {in.owner, in.idempotency_key, in.request_sha256, seq, ts});
        if (!key) {
            if (key.error().native.starts_with("1062/")) {
                conn.rollback();
                return fail(ErrorCode::conflict, "idempotency key already used", "duplicate");
            }
            return rollback_on_error(key.error());
        }
    }
    std::int64_t ordinal = 0;
    for (const auto& f : in.sources) {
        auto r = conn.execute(
            "INSERT INTO job_files (job_seq, kind, name, original_name, size, content_type, "
            "sha256, created_at, ordinal) VALUES (?, 'source', ?, ?, ?, ?, ?, ?, ?)",
            {seq, f.name, f.original_name, static_cast<std::int64_t>(f.size), f.content_type,
             f.sha256, ts, ordinal++});
        if (!r) return rollback_on_error(r.error());
    }
    if (auto r = conn.commit(); !r) return rollback_on_error(r.error());

    Job job;
    job.seq = static_cast<std::uint64_t>(seq);
    job.id = in.id;
    job.owner = in.owner;
    job.type = in.type;
    job.priority = in.priority;
    job.params = in.params;
    job.max_attempts = in.max_attempts;
    job.created_at = job.updated_at = job.run_at = util::format_rfc3339(now);
    job.sources = in.sources;
    auto position = queue_position(conn, job.priority, ts, job.seq, position_cap);
    if (position) job.position_in_queue = *position;
    return job;
}

Result<std::optional<IdempotencyRecord>> find_idempotency_key(db::Connection& conn,
                                                              const std::string& owner,
                                                              const std::string& key) {
    auto rows = conn.query(
        "SELECT k.request_sha256, j.id FROM idempotency_keys k JOIN jobs j ON j.seq = k.job_seq "
        "WHERE k.owner = ? AND k.idem_key = ? AND k.created_at >= NOW(3) - INTERVAL 24 HOUR",
        {owner, key});
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<IdempotencyRecord>{};
    return std::optional(IdempotencyRecord{rows->front().text(0), rows->front().text(1)});
}

Result<std::optional<Job>> find_job(db::Connection& conn, const Viewer& viewer,
                                    const std::string& id, std::int64_t position_cap) {
    // The job and its files in one round trip, the job's columns repeated on each file's row.
    static const std::string sql = fmt::format(
        "SELECT {}, {} FROM jobs j LEFT JOIN job_files f ON f.job_seq = j.seq "
        "WHERE j.id = ? AND (j.owner = ? OR ?) ORDER BY f.kind, f.ordinal, f.name",
        qualified_job_columns('j'), file_columns);
    // Not even asked: the id column takes ASCII only, and other bytes are a collation error.
    if (!util::is_job_id(id)) return std::optional<Job>{};
    auto rows = conn.query(sql, {id, viewer.owner, std::int64_t{viewer.admin ? 1 : 0}});
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<Job>{};
    auto job = job_from_rows(conn, *rows, position_cap);
    if (!job) return std::unexpected(job.error());
    return std::optional<Job>(std::move(*job));
}

Result<TokenAndJob> find_job_by_token(db::Connection& conn, const std::string& token_sha256,
                                      const std::string& id, std::int64_t position_cap) {
    // The token and the job it may see in one round trip: no row is an unknown or revoked
    // token; a row of NULL job columns is a job that is missing or another owner's.
    static const std::string sql = fmt::format(
        "SELECT {}, {}, t.owner, t.is_admin FROM tokens t "
        "LEFT JOIN jobs j ON j.id = ? AND (j.owner = t.owner OR t.is_admin) "
        "LEFT JOIN job_files f ON f.job_seq = j.seq "
        "WHERE t.token_sha256 = ? AND t.revoked_at IS NULL ORDER BY f.kind, f.ordinal, f.name",
        qualified_job_columns('j'), file_columns);
    constexpr std::size_t viewer_column = job_column_count + 6;
    // An id outside the id alphabet is asked as "", which no job has: the token still counts
    // (401 before 404), and the ASCII id column is never compared with other bytes.
    const std::string asked = util::is_job_id(id) ? id : std::string();
    auto rows = conn.query(sql, {asked, token_sha256});
    if (!rows) return std::unexpected(rows.error());
    TokenAndJob found;
    if (rows->empty()) return found;
    const auto& first = rows->front();
    found.viewer = Viewer{first.text(viewer_column), first.integer(viewer_column + 1) != 0};
    if (first.is_null(0)) return found;
    auto job = job_from_rows(conn, *rows, position_cap);
    if (!job) return std::unexpected(job.error());
    found.job = std::move(*job);
    return found;
}

Result<JobPage> list_jobs(db::Connection& conn, const Viewer& viewer, const ListFilter& filter) {
    // NULL filters match everything; the seq bound makes the page keyset-paginated.
    static const std::string where =
        "(owner = ? OR ?) AND (? IS NULL OR status = ?) AND (? IS NULL OR type = ?) AND seq < ?";
    static const std::string jobs_sql =
        fmt::format("SELECT {} FROM jobs WHERE {} ORDER BY seq DESC LIMIT ?", job_columns, where);
    static const std::string files_sql = fmt::format(
        "SELECT f.kind, f.name, f.original_name, f.size, f.content_type, f.sha256, f.job_seq "
        "FROM job_files f JOIN (SELECT seq FROM jobs WHERE {} ORDER BY seq DESC LIMIT ?) j "
        "ON f.job_seq = j.seq ORDER BY f.kind, f.ordinal, f.name",
        where);

    db::Value status =
        filter.status ? db::Value(std::string(to_string(*filter.status))) : db::Value(nullptr);
    db::Value type = filter.type ? db::Value(*filter.type) : db::Value(nullptr);
    const auto before = static_cast<std::int64_t>(
        filter.before_seq.value_or(static_cast<std::uint64_t>(INT64_MAX)));
    // One row more than asked tells whether another page exists.
    const std::int64_t fetch = filter.limit + 1;
    std::initializer_list<db::Value> params = {
        viewer.owner, std::int64_t{viewer.admin ? 1 : 0}, status, status, type, type, before,
        fetch};

    auto jobs_stmt = conn.prepare(jobs_sql);
    if (!jobs_stmt) return std::unexpected(jobs_stmt.error());
    auto rows = (*jobs_stmt)->query(std::span<const db::Value>(params.begin(), params.size()));
    if (!rows) return std::unexpected(rows.error());

    JobPage page;
    for (const auto& row : *rows) page.jobs.push_back(read_job(row));
    if (page.jobs.size() > static_cast<std::size_t>(filter.limit)) {
        page.jobs.resize(static_cast<std::size_t>(filter.limit));
        page.next_before_seq = page.jobs.back().seq;
    }
    if (page.jobs.empty()) return page;

    auto files_stmt = conn.prepare(files_sql);
    if (!files_stmt) return std::unexpected(files_stmt.error());
    auto files = (*files_stmt)->query(std::span<const db::Value>(params.begin(), params.size()));
    if (!files) return std::unexpected(files.error());
    for (const auto& row : *files) {
        auto seq = static_cast<std::uint64_t>(row.integer(6));
        for (auto& job : page.jobs) {
            if (job.seq == seq) {
                attach_file(job, row);
                break;
            }
        }
    }
    return page;
}

std::string encode_cursor(std::uint64_t before_seq) {
    return util::base64url_encode("v1:" + std::to_string(before_seq));
}

std::optional<std::uint64_t> decode_cursor(std::string_view cursor) {
    if (cursor.size() > 64) return std::nullopt;
    auto text = util::base64url_decode(cursor);
    if (!text || !text->starts_with("v1:")) return std::nullopt;
    std::uint64_t seq = 0;
    const char* begin = text->data() + 3;
    const char* end = text->data() + text->size();
    auto [ptr, ec] = std::from_chars(begin, end, seq);
    if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
    // Only cursors this server issued: a seq is a signed BIGINT, and one text per seq.
    if (seq > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        encode_cursor(seq) != cursor) {
        return std::nullopt;
    }
    return seq;
}

}  // namespace kiln::jobs
