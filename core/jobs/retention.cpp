#include "core/jobs/retention.hpp"

#include <charconv>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

namespace kiln::jobs {
namespace fs = std::filesystem;
namespace {

struct Victim {
    std::int64_t seq;
    std::string id;
};

// Which jobs a purge pass deletes: their statuses, and how long ago they finished at least.
struct Doomed {
    const char* status;
    const char* or_status;
    std::chrono::seconds finished_before;
};

// Deletes the rows (job_files and idempotency keys cascade), then the files. Each row is deleted
// only if it still qualifies: a job retried since it was selected is pending again and stays. A
// crash between row and files leaves orphan files, which the orphan sweep removes.
Result<std::uint64_t> delete_jobs(db::Connection& conn, const storage::Storage& storage,
                                  const std::vector<Victim>& victims, const Doomed& doomed) {
    std::uint64_t deleted = 0;
    for (const auto& v : victims) {
        auto d = conn.execute(
            "DELETE FROM jobs WHERE seq = ? AND status IN (?, ?) AND "
            "finished_at < NOW(3) - INTERVAL ? SECOND",
            {v.seq, doomed.status, doomed.or_status, std::int64_t{doomed.finished_before.count()}});
        if (!d) return std::unexpected(d.error());
        if (*d == 0) continue;
        if (auto r = storage.remove_job(v.id); !r) return std::unexpected(r.error());
        deleted += *d;
    }
    return deleted;
}

Result<std::vector<Victim>> select_victims(db::Connection& conn, std::string_view sql,
                                           std::initializer_list<db::Value> params) {
    auto rows = conn.query(sql, params);
    if (!rows) return std::unexpected(rows.error());
    std::vector<Victim> out;
    for (const auto& row : *rows) out.push_back({row.integer(0), row.text(1)});
    return out;
}

bool older_than(const fs::path& path, std::chrono::seconds age) {
    std::error_code ec;
    auto mtime = fs::last_write_time(path, ec);
    if (ec) return false;
    return fs::file_time_type::clock::now() - mtime > age;
}

Result<std::uint64_t> sweep_orphans(db::Connection& conn, const storage::Storage& storage,
                                    std::chrono::seconds age) {
    std::uint64_t removed = 0;
    for (const char* area : {"sources", "results", "logs"}) {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(storage.root() / area, ec)) {
            if (!older_than(entry.path(), age)) continue;
            // Published but its row not yet committed: the uploader still holds the lock.
            if (storage::DirectoryLock::held_elsewhere(entry.path())) continue;
            auto rows =
                conn.query("SELECT 1 FROM jobs WHERE id = ?", {entry.path().filename().string()});
            if (!rows) return std::unexpected(rows.error());
            if (!rows->empty()) continue;
            fs::remove_all(entry.path(), ec);
            ++removed;
        }
    }
    return removed;
}

std::uint64_t sweep_staging(const storage::Storage& storage, std::chrono::seconds age) {
    std::uint64_t removed = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(storage.root() / "tmp", ec)) {
        if (!older_than(entry.path(), age)) continue;
        // An upload or a conversion in progress, however long it has been quiet.
        if (storage::DirectoryLock::held_elsewhere(entry.path())) continue;
        fs::remove_all(entry.path(), ec);
        ++removed;
    }
    return removed;
}

}  // namespace

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
    if (text.size() < 2) return std::nullopt;
    long long n = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, n);
    if (ec != std::errc() || ptr != text.data() + text.size() - 1 || n < 0) return std::nullopt;
    switch (text.back()) {
        case 's':
            return std::chrono::seconds(n);
        case 'm':
            return std::chrono::seconds(n * 60);
        case 'h':
            return std::chrono::seconds(n * 3600);
        case 'd':
            return std::chrono::seconds(n * 86400);
        case 'w':
            return std::chrono::seconds(n * 7 * 86400);
        default:
            return std::nullopt;
    }
}

Result<PurgeReport> purge(db::Connection& conn, const storage::Storage& storage,
                          const PurgePolicy& policy) {
    PurgeReport report;
    const std::int64_t batch = policy.batch;
    if (policy.completed_older_than) {
        while (true) {
            auto victims = select_victims(
                conn,
                "SELECT seq, id FROM jobs WHERE status = 'completed' AND "
                "finished_at < NOW(3) - INTERVAL ? SECOND ORDER BY finished_at LIMIT ?",
                {std::int64_t{policy.completed_older_than->count()}, batch});
            if (!victims) return std::unexpected(victims.error());
            auto n = delete_jobs(conn, storage, *victims,
                                 {"completed", "completed", *policy.completed_older_than});
            if (!n) return std::unexpected(n.error());
            report.completed_deleted += *n;
            if (victims->size() < static_cast<std::size_t>(batch)) break;
        }
    }
    if (policy.failed_older_than) {
        const auto keep = static_cast<std::int64_t>(policy.keep_failed.value_or(0));
        while (true) {
            // The newest `keep` dead letters stay whatever their age.
            auto victims = select_victims(
                conn,
                "SELECT seq, id FROM jobs WHERE status IN ('failed', 'cancelled') AND "
                "finished_at < NOW(3) - INTERVAL ? SECOND AND seq NOT IN (SELECT seq FROM "
                "(SELECT seq FROM jobs WHERE status IN ('failed', 'cancelled') "
                "ORDER BY finished_at DESC, seq DESC LIMIT ?) newest) "
                "ORDER BY finished_at LIMIT ?",
                {std::int64_t{policy.failed_older_than->count()}, keep, batch});
            if (!victims) return std::unexpected(victims.error());
            auto n = delete_jobs(conn, storage, *victims,
                                 {"failed", "cancelled", *policy.failed_older_than});
            if (!n) return std::unexpected(n.error());
            report.failed_deleted += *n;
            if (victims->size() < static_cast<std::size_t>(batch)) break;
        }
    }
    auto orphans = sweep_orphans(conn, storage, policy.orphans_older_than);
    if (!orphans) return std::unexpected(orphans.error());
    report.orphan_dirs_removed = *orphans;
    report.staging_entries_removed = sweep_staging(storage, policy.orphans_older_than);
    while (true) {
        auto expired = conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < NOW(3) - INTERVAL 24 HOUR LIMIT ?",
            {batch});
        if (!expired) return std::unexpected(expired.error());
        report.idempotency_keys_expired += *expired;
        if (*expired < static_cast<std::uint64_t>(batch)) break;
    }
    return report;
}

}  // namespace kiln::jobs
