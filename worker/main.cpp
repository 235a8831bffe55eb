// kiln-worker: claims jobs from MariaDB and runs their converters. SIGTERM/SIGINT stop it
// gracefully (running jobs get the grace period, then go back to pending); SIGHUP reloads the
// converter definitions.

#include <csignal>
#include <sstream>
#include <thread>

#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/log.hpp"
#include "core/util/cli.hpp"
#include "core/util/systemd.hpp"
#include "worker/worker.hpp"

int main(int argc, char** argv) {
    using namespace kiln;
    CLI::App cli{"kiln-worker: runs kiln's conversion jobs"};
    std::optional<std::string> config_path;
    std::optional<unsigned> slots;
    std::optional<std::string> types;
    std::optional<std::string> name;
    std::optional<unsigned> grace;
    std::optional<unsigned> prefetch;
    std::optional<unsigned> lease;
    cli.add_option("-c,--config", config_path,
                   "config file (default $KILN_CONFIG or /etc/kiln/kiln.toml)");
    cli.add_option("--slots", slots, "jobs run at once (overrides worker.slots)")
        ->check(CLI::Range(1, 256));
    cli.add_option("--types", types, "comma-separated converter names to run (default: all)");
    cli.add_option("--name", name, "worker name recorded on claimed jobs (default host-pid)");
    cli.add_option(
        "--grace-seconds", grace,
        "time running jobs get to finish after SIGTERM (overrides worker.grace_seconds)");
    cli.add_option("--prefetch", prefetch, "jobs claimed ahead of free slots (worker.prefetch)")
        ->check(CLI::Range(0, 256));
    cli.add_option("--lease-seconds", lease, "lease length (overrides worker.lease_seconds)")
        ->check(CLI::Range(2, 3600));
    if (auto status = util::parse_command_line(cli, "kiln-worker", argc, argv)) return *status;

    auto config = load_config(config_path);
    if (!config) {
        log::error("invalid configuration", {{"error", config.error().describe()}});
        return 2;
    }
    if (slots) config->worker.slots = *slots;
    if (name) config->worker.name = *name;
    if (grace) config->worker.grace = std::chrono::seconds(*grace);
    if (prefetch) config->worker.prefetch = *prefetch;
    if (lease) config->worker.lease = std::chrono::seconds(*lease);
    if (types) {
        config->worker.types.clear();
        std::stringstream list(*types);
        for (std::string t; std::getline(list, t, ',');) {
            if (!t.empty()) config->worker.types.push_back(t);
        }
    }
    auto catalog = converters::load_definitions(config->converter_dirs);
    if (!catalog) {
        log::error("invalid converter definitions", {{"error", catalog.error().describe()}});
        return 2;
    }
    db::init_library();

    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    worker::Worker engine(*config, std::move(*catalog));
    std::thread signal_thread([&] {
        while (true) {
            int sig = 0;
            sigwait(&signals, &sig);
            if (sig == SIGHUP) {
                auto fresh = converters::load_definitions(config->converter_dirs);
                if (!fresh) {
                    log::error("reload failed; keeping the old definitions",
                               {{"error", fresh.error().describe()}});
                    continue;
                }
                log::info("converter definitions reloaded", {{"count", fresh->size()}});
                engine.reload(std::move(*fresh));
                continue;
            }
            log::info("stopping", {{"signal", sig}, {"worker", engine.name()}});
            util::notify("STOPPING=1");
            engine.stop();
            return;
        }
    });
    signal_thread.detach();

    auto ran = engine.run();
    if (!ran) {
        log::error("cannot start", {{"error", ran.error().describe()}});
        return 1;
    }
    return 0;
}
