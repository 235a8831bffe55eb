// kiln-api: the FastCGI application behind nginx. Reads the config, loads the converter
// definitions, then serves requests on a pool of threads until SIGTERM/SIGINT.

#include <malloc.h>

#include <csignal>
#include <cstdlib>
#include <thread>

#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/http/fcgi_server.hpp"
#include "core/log.hpp"
#include "core/util/cli.hpp"
#include "core/util/systemd.hpp"
#include "fcgi/api_handler.hpp"

namespace {

// Blocks the stop signals (and SIGHUP, whose default would end the process) in every thread and
// waits for them in one, so shutdown runs as ordinary code instead of inside a signal handler.
sigset_t handled_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kiln;
    CLI::App cli{"kiln-api: the kiln job API (FastCGI)"};
    std::optional<std::string> config_path;
    cli.add_option("-c,--config", config_path,
                   "config file (default $KILN_CONFIG or /etc/kiln/kiln.toml)");
    if (auto status = util::parse_command_line(cli, "kiln-api", argc, argv)) return *status;

    auto config = load_config(config_path);
    if (!config) {
        log::error("invalid configuration", {{"error", config.error().describe()}});
        return 2;
    }
    auto converters = converters::load_definitions(config->converter_dirs);
    if (!converters) {
        log::error("invalid converter definitions", {{"error", converters.error().describe()}});
        return 2;
    }
    api::AppState app{*config, std::move(*converters), storage::Storage(config->storage_root)};
    if (auto r = app.storage.ensure_layout(); !r) {
        log::error("storage unusable", {{"error", r.error().describe()}});
        return 2;
    }
    db::init_library();
    // glibc gives each thread its own malloc arena and keeps freed memory in it: with 16
    // request threads that retention, not any request, would set the resident size.
    mallopt(M_ARENA_MAX, 2);

    sigset_t signals = handled_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-response must not kill the process

    auto server = http::FcgiServer::open(config->api.listen);
    if (!server) {
        log::error("cannot listen", {{"error", server.error().describe()}});
        return 1;
    }
    std::thread signal_thread([&] {
        int sig = 0;
        while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
            log::warning(
                "SIGHUP ignored: kiln-api reads its config and converter definitions "
                "when it starts; restart it to apply changes");
        }
        log::info("stopping", {{"signal", sig}});
        util::notify("STOPPING=1");
        (*server)->stop();
    });
    signal_thread.detach();

    // Before READY=1: a kiln-api that cannot type uploads is not ready.
    auto magic_database = magic::Database::load();
    if (!magic_database) {
        log::error("cannot load the magic database",
                   {{"error", magic_database.error().describe()}});
        return 2;
    }
    log::info("kiln-api ready", {{"listen", config->api.listen},
                                 {"threads", config->api.threads},
                                 {"upload_threads", config->api.upload_threads},
                                 {"converters", app.converters.size()}});
    util::notify("READY=1");
    auto ran = (*server)->run(config->api.threads, config->api.upload_threads,
                              [&]() -> Result<std::unique_ptr<http::ThreadHandler>> {
                                  auto magic = magic::Detector::open(*magic_database);
                                  if (!magic) return std::unexpected(magic.error());
                                  return std::make_unique<api::ApiHandler>(app, std::move(*magic));
                              });
    if (!ran) {
        log::error("cannot start", {{"error", ran.error().describe()}});
        return 1;
    }
    log::info("kiln-api stopped");
    return 0;
}
