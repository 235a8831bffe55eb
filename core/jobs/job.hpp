#pragma once
// The job as clients see it, and the vocabulary of its states and priorities.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::jobs {

enum class JobStatus { pending, running, completed, failed, cancelled };
std::string_view to_string(JobStatus status);
std::optional<JobStatus> parse_status(std::string_view text);

// Priorities are stored 0..100, higher first; the API names three levels.
inline constexpr int priority_batch = 10;
inline constexpr int priority_standard = 50;
inline constexpr int priority_premium = 90;
std::optional<int> parse_priority(std::string_view name);
std::string priority_name(int priority);

struct FileRecord {
    std::string name;           // sanitised, unique within the job and kind
    std::string original_name;  // as the client sent it (metadata only)
    std::uint64_t size = 0;
    std::string content_type;  // detected by libmagic, never the declared one
    std::string sha256;
};

struct Job {
    std::uint64_t seq = 0;  // internal
    std::string id;
    std::string owner;
    std::string type;
    JobStatus status = JobStatus::pending;
    int priority = priority_standard;
    nlohmann::json params = nlohmann::json::object();
    int progress = 0;
    std::optional<std::string> step;
    int attempts = 0;
    int max_attempts = 0;
    std::optional<std::string> error;
    std::string created_at;  // RFC 3339
    std::optional<std::string> started_at;
    std::optional<std::string> finished_at;
    std::string updated_at;
    std::string run_at;
    bool cancel_requested = false;
    std::optional<std::int64_t> position_in_queue;  // pending jobs only
    std::vector<FileRecord> sources;
    std::vector<FileRecord> results;
};

nlohmann::json to_json(const FileRecord& file);
nlohmann::json to_json(const Job& job);

}  // namespace kiln::jobs
