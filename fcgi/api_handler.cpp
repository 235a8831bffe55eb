#include "fcgi/api_handler.hpp"

#include <exception>
#include <vector>

#include "core/auth/tokens.hpp"
#include "core/log.hpp"

namespace kiln::api {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> parts;
    while (!path.empty()) {
        auto slash = path.find('/');
        auto part = path.substr(0, slash);
        if (!part.empty()) parts.push_back(part);
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return parts;
}

http::Response method_not_allowed(std::string_view allow) {
    auto r = http::problem(
        Error{ErrorCode::method_not_allowed, "allowed methods: " + std::string(allow), ""});
    r.header("Allow", std::string(allow));
    return r;
}

http::Response not_found() {
    return http::problem(Error{ErrorCode::not_found, "no such resource", ""});
}

}  // namespace

http::Response ApiHandler::handle(http::Request& request) {
    try {
        return route(request);
    } catch (const std::exception& e) {
        // A bug must not take the process down or answer 500: log it, answer a retryable 503.
        log::error("unhandled exception", {{"error", e.what()}, {"path", request.path}});
        return http::problem(Error{ErrorCode::internal, e.what(), ""});
    }
}

http::Response ApiHandler::health() {
    auto checked = session_.checked();
    if (!checked) return http::problem(checked.error(), {{"database", "unavailable"}});
    return http::json_response(200, {{"status", "ok"}, {"database", "ok"}});
}

http::Response ApiHandler::route(http::Request& request) {
    const auto parts = split_path(request.path);
    const bool get = request.method == "GET" || request.method == "HEAD";

    if (parts.size() == 1 && parts[0] == "health") {
        return get ? health() : method_not_allowed("GET, HEAD");
    }
    if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") return not_found();
    if (!request.repeated_header.empty()) {
        return http::problem(Error{ErrorCode::invalid_request,
                                   "the " + request.repeated_header + " header is given twice",
                                   ""});
    }

    // Authentication comes first for every API path, so unknown paths and ids reveal nothing.
    auto token = auth::bearer_token(request.authorization);
    if (!token) {
        return http::problem(Error{ErrorCode::unauthorized,
                                   "an Authorization: Bearer <token> header is required", ""});
    }
    // GET job, which clients poll, reads its token together with the job: one round trip less.
    if (get && parts.size() == 4 && parts[2] == "jobs") {
        return answer(get_job_by_token(app_, session_, *token, std::string(parts[3])), request);
    }
    auto viewer = session_.run_twice_if_lost(
        [&](db::Connection& conn) { return auth::authenticate(conn, *token); });
    if (!viewer) {
        static log::RateLimit budget(10);
        log::write_limited(budget, log::Level::warning, "token lookup failed",
                           {{"error", viewer.error().describe()}});
        return http::problem(viewer.error());
    }
    if (!*viewer) {
        return http::problem(Error{ErrorCode::unauthorized, "the token is unknown or revoked", ""});
    }
    Context ctx{app_, session_, *magic_, wakeup_, **viewer};

    Result<http::Response> result = fail(ErrorCode::not_found, "no such resource");
    const std::string_view collection = parts[2];
    if (collection == "types" && parts.size() == 3) {
        if (!get) return method_not_allowed("GET, HEAD");
        result = list_types(app_);
    } else if (collection == "jobs" && parts.size() == 3) {
        if (request.method == "POST")
            result = create_job(ctx, request);
        else if (get)
            result = list_jobs(ctx, request);
        else
            return method_not_allowed("GET, HEAD, POST");
    } else if (collection == "jobs" && parts.size() == 5 &&
               (parts[4] == "cancel" || parts[4] == "retry")) {
        if (request.method != "POST") return method_not_allowed("POST");
        const std::string id(parts[3]);
        result = parts[4] == "cancel" ? cancel_job(ctx, id) : retry_job(ctx, id);
    } else if (collection == "jobs" && parts.size() >= 4 && parts.size() <= 6 &&
               (parts.size() == 4 || parts[4] == "sources" || parts[4] == "results" ||
                parts[4] == "logs")) {
        if (!get) return method_not_allowed("GET, HEAD");
        const std::string id(parts[3]);  // (a GET of the job itself was answered above)
        if (parts[4] == "sources" || parts[4] == "results") {
            auto area = parts[4] == "sources" ? storage::Area::sources : storage::Area::results;
            result = parts.size() == 5 ? list_files(ctx, id, area)
                                       : download_file(ctx, id, area, std::string(parts[5]));
        } else if (parts[4] == "logs") {
            result = parts.size() == 5 ? list_logs(ctx, id)
                                       : download_log(ctx, id, std::string(parts[5]));
        }
    }
    return answer(std::move(result), request);
}

// The response, or the problem response for the error that stands in its place.
http::Response ApiHandler::answer(Result<http::Response> result, const http::Request& request) {
    if (result) return std::move(*result);
    session_.note(result.error());
    if (http::status_of(result.error().code) == 503) {
        static log::RateLimit budget(10);  // a database outage fails every request
        log::write_limited(budget, log::Level::warning, "request failed",
                           {{"path", request.path}, {"error", result.error().describe()}});
    }
    if (result.error().code == ErrorCode::unsupported_media_type &&
        !result.error().native.empty()) {
        return http::problem(result.error(), {{"detected_type", result.error().native}});
    }
    return http::problem(result.error());
}

}  // namespace kiln::api
