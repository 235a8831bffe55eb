#pragma once
// Job rows in MariaDB: creation, lookup and listing for the API. Every statement is prepared
// once per connection; every value is bound.
//
// Visibility: a Viewer that is not admin sees only its owner's jobs; another owner's job is
// reported exactly like a missing one (nullopt), so ids cannot be probed.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/db/mariadb.hpp"
#include "core/jobs/job.hpp"
#include "core/result.hpp"

namespace kiln::jobs {

struct Viewer {
    std::string owner;
    bool admin = false;
};

struct NewJob {
    std::string id;
    std::string owner;
    std::string type;
    int priority = priority_standard;
    nlohmann::json params = nlohmann::json::object();
    int max_attempts = 3;
    std::vector<FileRecord> sources;
    std::string idempotency_key;  // empty: none
    std::string request_sha256;   // the request's fingerprint, with a key
};

// Inserts the job, its source files and its idempotency key in one transaction. Fails with
// unavailable when the database is down (nothing is recorded then), and with conflict (native
// "duplicate") when another request recorded the same idempotency key first.
//
// position_in_queue counts the jobs ahead up to `position_cap`: 0..cap-1 are exact, the cap
// itself means "the cap or more". Counting is a range scan of the claim index, so an exact
// figure would make every create and get slower as the queue grows.
Result<Job> create_job(db::Connection& conn, const NewJob& job, std::int64_t position_cap);

struct IdempotencyRecord {
    std::string request_sha256;
    std::string job_id;
};
// The live (under 24 h old) record of `owner`'s key, if any.
Result<std::optional<IdempotencyRecord>> find_idempotency_key(db::Connection& conn,
                                                              const std::string& owner,
                                                              const std::string& key);

// The job with its files and queue position, or nullopt when it does not exist for `viewer`.
Result<std::optional<Job>> find_job(db::Connection& conn, const Viewer& viewer,
                                    const std::string& id, std::int64_t position_cap);

// GET job's lookup, which clients poll: the viewer of a live token (nullopt for an unknown or
// revoked one) and the job it may see (nullopt when missing or another owner's), read together.
// `token_sha256` is the hex SHA-256 of the bearer token, as stored.
struct TokenAndJob {
    std::optional<Viewer> viewer;
    std::optional<Job> job;
};
Result<TokenAndJob> find_job_by_token(db::Connection& conn, const std::string& token_sha256,
                                      const std::string& id, std::int64_t position_cap);

struct ListFilter {
    std::optional<JobStatus> status;
    std::optional<std::string> type;
    int limit = 50;
    std::optional<std::uint64_t> before_seq;  // keyset: jobs older than this one
};

struct JobPage {
    std::vector<Job> jobs;
    std::optional<std::uint64_t> next_before_seq;  // set when there may be more
};

// Newest first. Files are included; queue positions are not (listing stays one cheap query).
Result<JobPage> list_jobs(db::Connection& conn, const Viewer& viewer, const ListFilter& filter);

// Opaque keyset cursor: base64url of "v1:<seq>". decode fails on anything else.
std::string encode_cursor(std::uint64_t before_seq);
std::optional<std::uint64_t> decode_cursor(std::string_view cursor);

// "YYYY-MM-DD HH:MM:SS.fff" UTC, as DATETIME(3) literals are bound.
std::string sql_timestamp(std::int64_t ms_since_epoch);

}  // namespace kiln::jobs
