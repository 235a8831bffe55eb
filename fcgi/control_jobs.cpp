// POST endpoints that change a job after creation: cancel and retry.

#include "core/jobs/control.hpp"
#include "fcgi/api_handler.hpp"

namespace kiln::api {

Result<http::Response> cancel_job(Context& ctx, const std::string& id) {
    // Not run twice: a second cancel would find the first one's work done (409).
    auto conn = ctx.db.get();
    if (!conn) return std::unexpected(conn.error());
    auto outcome = jobs::cancel_job(**conn, ctx.viewer, id);
    if (!outcome) return std::unexpected(outcome.error());
    auto job = get_job(ctx, id);
    if (!job) return job;
    // A running job is cancelled by its worker shortly: 202 says "accepted, not done yet".
    if (*outcome == jobs::CancelResult::cancelling) job->status = 202;
    return job;
}

Result<http::Response> retry_job(Context& ctx, const std::string& id) {
    auto conn = ctx.db.get();
    if (!conn) return std::unexpected(conn.error());
    if (auto r = jobs::retry_job(**conn, ctx.viewer, id); !r) return std::unexpected(r.error());
    ctx.wakeup.notify();
    return get_job(ctx, id);
}

}  // namespace kiln::api
