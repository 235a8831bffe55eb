#pragma once
// Deleting old jobs with their files, and sweeping files that lost their job. Files go first,
// then rows, never the reverse: a crash in between leaves a row without files only for jobs the
// admin asked to delete. Rows are deleted in bounded batches so the table is never locked long.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "core/db/mariadb.hpp"
#include "core/result.hpp"
#include "core/storage/storage.hpp"

namespace kiln::jobs {

struct PurgePolicy {
    std::optional<std::chrono::seconds> completed_older_than;
    std::optional<std::chrono::seconds> failed_older_than;  // failed and cancelled jobs
    std::optional<std::uint64_t> keep_failed;       // the newest N failed/cancelled jobs are kept
    std::chrono::seconds orphans_older_than{3600};  // files without a row, staging leftovers
    int batch = 500;
};

struct PurgeReport {
    std::uint64_t completed_deleted = 0;
    std::uint64_t failed_deleted = 0;
    std::uint64_t orphan_dirs_removed = 0;
    std::uint64_t staging_entries_removed = 0;
    std::uint64_t idempotency_keys_expired = 0;
};

Result<PurgeReport> purge(db::Connection& conn, const storage::Storage& storage,
                          const PurgePolicy& policy);

// "90s", "15m", "1h", "7d", "2w" to seconds; nullopt when malformed.
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

}  // namespace kiln::jobs
