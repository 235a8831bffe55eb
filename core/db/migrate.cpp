#include "core/db/migrate.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/db/mariadb.hpp"

namespace kiln::db {
namespace {

struct MigrationFile {
    int version = 0;
    std::filesystem::path path;
};

Result<std::vector<MigrationFile>> find_migrations(const std::filesystem::path& dir) {
    std::error_code ec;
    std::vector<MigrationFile> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.path().extension() != ".sql") continue;
        const std::string name = entry.path().filename().string();
        MigrationFile m;
        auto [ptr, err] = std::from_chars(name.data(), name.data() + name.size(), m.version);
        if (err != std::errc() || m.version <= 0 || *ptr != '_') {
            return fail(ErrorCode::config, "migration file name must be NNN_name.sql: " + name);
        }
        m.path = entry.path();
        files.push_back(std::move(m));
    }
    if (ec) return fail_errno("opendir(" + dir.string() + ")", ec.value());
    std::sort(files.begin(), files.end(),
              [](const auto& a, const auto& b) { return a.version < b.version; });
    return files;
}

}  // namespace

Result<> check_schema_version(Connection& conn) {
    auto rows = conn.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    // 1146, no such table: the database was never migrated (version 0).
    if (!rows && !rows.error().native.starts_with("1146/")) return std::unexpected(rows.error());
    const int version = rows ? static_cast<int>(rows->front().integer(0)) : 0;
    if (version >= required_schema_version) return {};
    return fail(ErrorCode::unavailable,
                fmt::format("the database schema is at version {}, this kiln needs {}: run "
                            "kilnctl migrate",
                            version, required_schema_version));
}

Result<MigrationReport> migrate(const DatabaseConfig& config, const std::filesystem::path& dir) {
    auto files = find_migrations(dir);
    if (!files) return std::unexpected(files.error());
    if (files->empty()) {
        return fail(ErrorCode::config, "no migrations (NNN_name.sql) in " + dir.string());
    }
    // No timeout on reads: building an index on a large jobs table can take minutes, and a
    // client that gave up would leave the server building it and the migration unrecorded.
    auto conn = Connection::open(config, /*multi_statements=*/true, std::chrono::seconds{0});
    if (!conn) return std::unexpected(conn.error());
    Connection& c = **conn;
    // But a table's metadata lock is waited for 10 s at most (the server's default is a day):
    // while an ALTER waits behind a long transaction, every query on that table queues behind
    // the ALTER. Giving up says so; the migration can be run again.
    if (auto r = c.run_script("SET SESSION lock_wait_timeout = 10"); !r) {
        return std::unexpected(r.error());
    }

    // One migrate at a time (two hosts upgraded at once, a deploy run twice): a second one
    // waits, then finds the migrations applied, instead of failing on the first one's records.
    // (The lock is the server's: named after the database, so that installations sharing a
    // server do not wait for each other.)
    auto locked = c.query("SELECT GET_LOCK(CONCAT('kiln.migrate.', DATABASE()), 600)");
    if (!locked) return std::unexpected(locked.error());
    if (locked->empty() || locked->front().is_null(0) || locked->front().integer(0) != 1) {
        return fail(ErrorCode::conflict,
                    "another kilnctl migrate has held the migration lock for 10 minutes");
    }

    if (auto r = c.run_script(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INT NOT NULL PRIMARY KEY, "
            "name VARCHAR(255) NOT NULL, applied_at DATETIME(3) NOT NULL) ENGINE=InnoDB");
        !r)
        return std::unexpected(r.error());

    auto rows = c.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (!rows) return std::unexpected(rows.error());
    MigrationReport report;
    report.current_version = static_cast<int>(rows->front().integer(0));

    for (const auto& m : *files) {
        if (m.version <= report.current_version) continue;
        std::ifstream in(m.path);
        std::stringstream sql;
        sql << in.rdbuf();
        if (!in) return fail(ErrorCode::config, "cannot read " + m.path.string());
        // DDL commits implicitly in MariaDB, so a migration is not atomic: each file is written
        // to be re-runnable up to its last statement, and is recorded only once it all ran.
        if (auto r = c.run_script(sql.str()); !r) {
            const bool lock_wait = r.error().native.starts_with("1205/");
            return fail(r.error().code,
                        m.path.filename().string() + ": " + r.error().message +
                            (lock_wait ? " (a long transaction holds the table: run kilnctl "
                                         "migrate again once it has ended)"
                                       : ""),
                        r.error().native);
        }
        auto recorded = c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, "
            "UTC_TIMESTAMP(3))",
            {std::int64_t{m.version}, m.path.filename().string()});
        if (!recorded) return std::unexpected(recorded.error());
        report.applied.push_back(m.path.filename().string());
        report.current_version = m.version;
    }
    return report;
}

}  // namespace kiln::db
