// GET endpoints: one job, the job list, the converter list, file lists and downloads.

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "core/converters/rules.hpp"
#include "core/http/request.hpp"
#include "core/storage/storage.hpp"
#include "core/util/crypto.hpp"
#include "fcgi/api_handler.hpp"

namespace kiln::api {
namespace {

constexpr int default_page_size = 50;
constexpr int max_page_size = 500;

Result<jobs::Job> visible_job(Context& ctx, const std::string& id) {
    auto job = ctx.db.run_twice_if_lost([&](db::Connection& conn) {
        return jobs::find_job(conn, ctx.viewer, id, ctx.app.config.api.queue_position_cap);
    });
    if (!job) return std::unexpected(job.error());
    if (!*job) return fail(ErrorCode::not_found, "no such job");
    return std::move(**job);
}

const std::vector<jobs::FileRecord>& files_of(const jobs::Job& job, storage::Area area) {
    return area == storage::Area::sources ? job.sources : job.results;
}

// Content-Disposition with both a plain ASCII fallback and the RFC 8187 UTF-8 name. In the
// fallback each non-ASCII character (stored names are valid UTF-8) becomes one '_'.
std::string content_disposition(const std::string& name) {
    std::string ascii;
    for (char c : name) {
        auto u = static_cast<unsigned char>(c);
        if (u >= 0x80 && u < 0xC0) continue;  // a UTF-8 continuation byte
        ascii.push_back(u >= 0x20 && u < 0x7f && c != '"' && c != '\\' ? c : '_');
    }
    return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" +
           storage::percent_encode(name);
}

}  // namespace

Result<http::Response> get_job(Context& ctx, const std::string& id) {
    auto job = visible_job(ctx, id);
    if (!job) return std::unexpected(job.error());
    return http::json_response(200, jobs::to_json(*job));
}

Result<http::Response> get_job_by_token(const AppState& app, db::Session& session,
                                        const std::string& token, const std::string& id) {
    const std::string token_sha256 = util::sha256_hex(token);
    auto found = session.run_twice_if_lost([&](db::Connection& conn) {
        return jobs::find_job_by_token(conn, token_sha256, id, app.config.api.queue_position_cap);
    });
    if (!found) return std::unexpected(found.error());
    if (!found->viewer) return fail(ErrorCode::unauthorized, "the token is unknown or revoked");
    if (!found->job) return fail(ErrorCode::not_found, "no such job");
    return http::json_response(200, jobs::to_json(*found->job));
}

Result<http::Response> list_jobs(Context& ctx, const http::Request& request) {
    auto query = http::parse_query(request.query_string);
    if (!query) return std::unexpected(query.error());
    jobs::ListFilter filter;
    filter.limit = default_page_size;
    for (const auto& [name, value] : *query) {
        if (name == "status") {
            filter.status = jobs::parse_status(value);
            if (!filter.status) {
                return fail(ErrorCode::invalid_request,
                            "status must be pending, running, completed, failed or cancelled");
            }
        } else if (name == "type") {
            if (!converters::is_valid_converter_name(value)) {
                return fail(ErrorCode::invalid_request,
                            "type must be a converter name ([a-z0-9][a-z0-9_.-]{0,63})");
            }
            filter.type = value;
        } else if (name == "limit") {
            int limit = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), limit);
            if (ec != std::errc() || ptr != value.data() + value.size() || limit < 1 ||
                limit > max_page_size) {
                return fail(ErrorCode::invalid_request,
                            "limit must be an integer from 1 to " + std::to_string(max_page_size));
            }
            filter.limit = limit;
        } else if (name == "cursor") {
            filter.before_seq = jobs::decode_cursor(value);
            if (!filter.before_seq) return fail(ErrorCode::invalid_request, "invalid cursor");
        } else {
            return fail(ErrorCode::invalid_request, "unknown query parameter '" + name + "'");
        }
    }
    auto page = ctx.db.run_twice_if_lost(
        [&](db::Connection& conn) { return jobs::list_jobs(conn, ctx.viewer, filter); });
    if (!page) return std::unexpected(page.error());
    nlohmann::json list = nlohmann::json::array();
    for (const auto& job : page->jobs) list.push_back(jobs::to_json(job));
    nlohmann::json body = {{"jobs", std::move(list)}, {"next_cursor", nullptr}};
    if (page->next_before_seq) body["next_cursor"] = jobs::encode_cursor(*page->next_before_seq);
    return http::json_response(200, body);
}

Result<http::Response> list_files(Context& ctx, const std::string& id, storage::Area area) {
    auto job = visible_job(ctx, id);
    if (!job) return std::unexpected(job.error());
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : files_of(*job, area)) files.push_back(jobs::to_json(f));
    return http::json_response(200, {{std::string(storage::to_string(area)), std::move(files)}});
}

Result<http::Response> download_file(Context& ctx, const std::string& id, storage::Area area,
                                     const std::string& name) {
    auto job = visible_job(ctx, id);
    if (!job) return std::unexpected(job.error());
    for (const auto& f : files_of(*job, area)) {
        if (f.name != name) continue;
        // nginx serves the bytes (sendfile) from its internal location; kiln-api only decides.
        http::Response r;
        r.status = 200;
        r.header("X-Accel-Redirect", storage::Storage::accel_uri(area, job->id, f.name));
        r.header("Content-Type", f.content_type);
        r.header("Content-Disposition", content_disposition(f.name));
        // nginx replaces any ETag with its own, but passes this one on (kiln-locations.conf):
        // clients can check a download against the SHA-256 computed when the file was stored.
        r.header("Repr-Digest", util::repr_digest_sha256(f.sha256));
        r.header("X-Content-Type-Options", "nosniff");
        return r;
    }
    return fail(ErrorCode::not_found, "no such file");
}

Result<http::Response> list_logs(Context& ctx, const std::string& id) {
    auto job = visible_job(ctx, id);
    if (!job) return std::unexpected(job.error());
    // Logs are files the workers write per attempt (logs/{job}/attempt-N.log), not rows.
    nlohmann::json logs = nlohmann::json::array();
    std::error_code ec;
    std::vector<std::pair<std::string, std::uint64_t>> found;
    for (const auto& entry :
         std::filesystem::directory_iterator(ctx.app.storage.root() / "logs" / job->id, ec)) {
        if (entry.is_regular_file(ec)) {
            found.emplace_back(entry.path().filename().string(), entry.file_size(ec));
        }
    }
    std::sort(found.begin(), found.end());
    for (const auto& [name, size] : found) logs.push_back({{"name", name}, {"size", size}});
    return http::json_response(200, {{"logs", std::move(logs)}});
}

Result<http::Response> download_log(Context& ctx, const std::string& id, const std::string& name) {
    auto job = visible_job(ctx, id);
    if (!job) return std::unexpected(job.error());
    std::error_code ec;
    const bool plain_name = name.find('/') == std::string::npos && !name.starts_with('.');
    if (!plain_name || !std::filesystem::is_regular_file(
                           ctx.app.storage.path_of(storage::Area::logs, job->id, name), ec)) {
        return fail(ErrorCode::not_found, "no such log");
    }
    http::Response r;
    r.status = 200;
    r.header("X-Accel-Redirect", storage::Storage::accel_uri(storage::Area::logs, job->id, name));
    r.header("Content-Type", "text/plain; charset=utf-8");
    return r;
}

http::Response list_types(const AppState& app) {
    nlohmann::json types = nlohmann::json::array();
    for (const auto& [name, def] : app.converters) types.push_back(converters::to_public_json(def));
    return http::json_response(200, {{"types", std::move(types)}});
}

}  // namespace kiln::api
