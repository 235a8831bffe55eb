#include "core/jobs/job.hpp"

namespace kiln::jobs {

std::string_view to_string(JobStatus status) {
    switch (status) {
        case JobStatus::pending:
            return "pending";
        case JobStatus::running:
            return "running";
        case JobStatus::completed:
            return "completed";
        case JobStatus::failed:
            return "failed";
        case JobStatus::cancelled:
            return "cancelled";
    }
    return "pending";
}

std::optional<JobStatus> parse_status(std::string_view text) {
    for (auto s : {JobStatus::pending, JobStatus::running, JobStatus::completed, JobStatus::failed,
                   JobStatus::cancelled}) {
        if (to_string(s) == text) return s;
    }
    return std::nullopt;
}

std::optional<int> parse_priority(std::string_view name) {
    if (name == "premium") return priority_premium;
    if (name == "standard") return priority_standard;
    if (name == "batch") return priority_batch;
    return std::nullopt;
}

std::string priority_name(int priority) {
    if (priority == priority_premium) return "premium";
    if (priority == priority_standard) return "standard";
    if (priority == priority_batch) return "batch";
    return std::to_string(priority);
}

nlohmann::json to_json(const FileRecord& file) {
    return {{"name", file.name},
            {"original_name", file.original_name},
            {"size", file.size},
            {"content_type", file.content_type},
            {"sha256", file.sha256}};
}

namespace {
nlohmann::json optional_json(const std::optional<std::string>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
}  // namespace

nlohmann::json to_json(const Job& job) {
    nlohmann::json sources = nlohmann::json::array();
    for (const auto& f : job.sources) sources.push_back(to_json(f));
    nlohmann::json results = nlohmann::json::array();
    for (const auto& f : job.results) results.push_back(to_json(f));
    return {
        {"id", job.id},
        {"type", job.type},
        {"status", to_string(job.status)},
        {"priority", priority_name(job.priority)},
        {"params", job.params},
        {"progress", job.progress},
        {"step", optional_json(job.step)},
        {"attempts", job.attempts},
        {"max_attempts", job.max_attempts},
        // A failed attempt with attempts left waits for its back-off: when it runs next.
        {"next_attempt_at", job.status == JobStatus::pending && job.attempts > 0
                                ? nlohmann::json(job.run_at)
                                : nlohmann::json(nullptr)},
        {"cancel_requested", job.cancel_requested},
        {"error", optional_json(job.error)},
        {"position_in_queue",
         job.position_in_queue ? nlohmann::json(*job.position_in_queue) : nlohmann::json(nullptr)},
        {"sources", std::move(sources)},
        {"results", std::move(results)},
        {"created_at", job.created_at},
        {"started_at", optional_json(job.started_at)},
        {"finished_at", optional_json(job.finished_at)},
        {"updated_at", job.updated_at},
    };
}

}  // namespace kiln::jobs
