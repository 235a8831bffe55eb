#pragma once
// kiln-api's request handling: routing, authentication and the mapping of every failure to a
// problem response. One ApiHandler per thread (it owns a database session and a libmagic cookie).

#include <map>
#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/converters/definition.hpp"
#include "core/db/mariadb.hpp"
#include "core/http/fcgi_server.hpp"
#include "core/jobs/repository.hpp"
#include "core/jobs/wakeup.hpp"
#include "core/magic/detector.hpp"
#include "core/storage/storage.hpp"

namespace kiln::api {

using Catalog = std::map<std::string, converters::Definition, std::less<>>;

// Shared, read-only after start-up.
struct AppState {
    Config config;
    Catalog converters;
    storage::Storage storage;
};

// What the endpoint handlers get: the thread's resources and the authenticated viewer. The
// database comes as the session, not a connection: a handler that waited (an upload) may find
// its connection gone and must be able to take a fresh one.
struct Context {
    const AppState& app;
    db::Session& db;
    magic::Detector& magic;
    jobs::WakeupSender& wakeup;
    const jobs::Viewer& viewer;
};

class ApiHandler final : public http::ThreadHandler {
  public:
    ApiHandler(const AppState& app, std::unique_ptr<magic::Detector> magic)
        : app_(app),
          session_(app.config.database),
          magic_(std::move(magic)),
          wakeup_(app.config.wakeup_dir) {}
    http::Response handle(http::Request& request) override;

  private:
    http::Response route(http::Request& request);
    http::Response health();
    http::Response answer(Result<http::Response> result, const http::Request& request);
    const AppState& app_;
    db::Session session_;
    std::unique_ptr<magic::Detector> magic_;
    jobs::WakeupSender wakeup_;
};

// Endpoint handlers (create_job.cpp, read_jobs.cpp). Each returns the response or the error
// that becomes its problem response.
Result<http::Response> create_job(Context& ctx, http::Request& request);
Result<http::Response> get_job(Context& ctx, const std::string& id);
// GET job as clients poll it: authenticates by itself, reading the token with the job.
Result<http::Response> get_job_by_token(const AppState& app, db::Session& session,
                                        const std::string& token, const std::string& id);
Result<http::Response> list_jobs(Context& ctx, const http::Request& request);
Result<http::Response> list_files(Context& ctx, const std::string& id, storage::Area area);
Result<http::Response> download_file(Context& ctx, const std::string& id, storage::Area area,
                                     const std::string& name);
Result<http::Response> list_logs(Context& ctx, const std::string& id);
Result<http::Response> download_log(Context& ctx, const std::string& id, const std::string& name);
Result<http::Response> cancel_job(Context& ctx, const std::string& id);
Result<http::Response> retry_job(Context& ctx, const std::string& id);
http::Response list_types(const AppState& app);

}  // namespace kiln::api
