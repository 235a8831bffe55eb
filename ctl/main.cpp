// kilnctl: the admin CLI: schema migrations, API tokens, cancel, retry and purge.

#include <filesystem>
#include <iostream>

#include "core/auth/tokens.hpp"
#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/db/migrate.hpp"
#include "core/jobs/control.hpp"
#include "core/jobs/retention.hpp"
#include "core/jobs/wakeup.hpp"
#include "core/util/cli.hpp"

namespace {

// Where `cmake --install` puts sql/, beside the converters (the config's default dir).
constexpr std::string_view default_migrations_dir = "/usr/share/kiln/sql";

int report(const kiln::Error& error) {
    std::cerr << "kilnctl: " << error.describe() << "\n";
    // As kiln-api and kiln-worker: a config that cannot be read or used is exit status 2.
    if (error.code == kiln::ErrorCode::config) return 2;
    return error.code == kiln::ErrorCode::unavailable ? 3 : 1;
}

// A database that does not answer, when no config file was read: most likely the wrong one.
int report_unreachable(const kiln::Error& error, const kiln::Config& config) {
    if (error.code == kiln::ErrorCode::unavailable && config.file.empty()) {
        std::cerr << "kilnctl: no config file was read (" << kiln::default_config_path
                  << " does not exist), so the built-in database settings were used; give "
                     "--config FILE or set KILN_CONFIG (a scripts/run stack's is var/kiln.toml)\n";
    }
    return report(error);
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kiln;
    CLI::App cli{"kilnctl: administer a kiln installation"};
    cli.require_subcommand(1);
    std::optional<std::string> config_path;
    cli.add_option("-c,--config", config_path,
                   "config file (default $KILN_CONFIG or /etc/kiln/kiln.toml)");

    auto* migrate_cmd = cli.add_subcommand("migrate", "apply the missing schema migrations");
    std::string migrations_dir(default_migrations_dir);
    migrate_cmd->add_option("--migrations", migrations_dir, "directory of NNN_name.sql files")
        ->capture_default_str();

    auto* token_cmd = cli.add_subcommand("token", "create, revoke and list API tokens");
    token_cmd->require_subcommand(1);
    auto* create_cmd = token_cmd->add_subcommand("create", "create a token; prints it once");
    std::string owner;
    bool admin = false;
    create_cmd->add_option("--owner", owner, "the owner the token acts for")->required();
    create_cmd->add_flag("--admin", admin, "the token sees every owner's jobs");
    auto* revoke_cmd = token_cmd->add_subcommand("revoke", "revoke a token by id or value");
    std::string which;
    revoke_cmd->add_option("token", which, "token id (from 'token list') or the token")->required();
    auto* list_cmd = token_cmd->add_subcommand("list", "list tokens (never their values)");

    auto* cancel_cmd = cli.add_subcommand("cancel", "cancel a pending or running job");
    std::string cancel_id;
    cancel_cmd->add_option("id", cancel_id, "job id")->required();

    auto* retry_cmd = cli.add_subcommand(
        "retry", "put a failed or cancelled job (or failed jobs of a type) back to pending");
    std::string retry_id, retry_type, failed_since;
    retry_cmd->add_option("id", retry_id, "job id");
    retry_cmd->add_option("--type", retry_type, "retry failed jobs of this converter");
    retry_cmd->add_option("--failed-since", failed_since,
                          "with --type: that failed within this long (e.g. 1h, 7d)");

    auto* purge_cmd =
        cli.add_subcommand("purge", "delete old jobs with their files, sweep orphan files");
    std::string completed_age, failed_age, orphan_age = "1h";
    std::optional<std::uint64_t> keep_failed;
    purge_cmd->add_option("--completed-older-than", completed_age, "e.g. 7d");
    purge_cmd->add_option("--failed-older-than", failed_age, "failed and cancelled jobs, e.g. 30d");
    // CLI11 reads "-1" into an unsigned option as a huge number: refuse a sign up front.
    purge_cmd->add_option("--keep-failed", keep_failed, "keep the newest N failed jobs anyway")
        ->check(CLI::Validator(
            [](const std::string& text) -> std::string {
                if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos)
                    return "";
                return "must be a whole number, 0 or more";
            },
            "N"));
    purge_cmd->add_option("--orphans-older-than", orphan_age,
                          "files without a job row, and staging leftovers (default 1h)");

    if (auto status = util::parse_command_line(cli, "kilnctl", argc, argv)) return *status;

    // Usage is checked before the database is asked, so bad usage exits 2 whatever its state.
    if (*retry_cmd && retry_id.empty() == retry_type.empty()) {
        std::cerr << "kilnctl: give either a job id or --type (with --failed-since)\n";
        return 2;
    }
    if (*retry_cmd && !retry_id.empty() && !failed_since.empty()) {
        std::cerr << "kilnctl: --failed-since goes with --type, not with a job id\n";
        return 2;
    }
    if (*revoke_cmd && which.empty()) {
        std::cerr << "kilnctl: token revoke takes a token id (from 'token list') or the token\n";
        return 2;
    }
    auto duration = [](const std::string& text, const char* option,
                       std::optional<std::chrono::seconds>& out) {
        if (text.empty()) return true;
        out = jobs::parse_duration(text);
        if (!out) std::cerr << "kilnctl: " << option << " takes a duration like 90m, 1h, 7d\n";
        return out.has_value();
    };
    std::optional<std::chrono::seconds> failed_window;
    if (!duration(failed_since, "--failed-since", failed_window)) return 2;
    jobs::PurgePolicy policy;
    std::optional<std::chrono::seconds> orphans;
    if (!duration(completed_age, "--completed-older-than", policy.completed_older_than) ||
        !duration(failed_age, "--failed-older-than", policy.failed_older_than) ||
        !duration(orphan_age, "--orphans-older-than", orphans) || !orphans) {
        return 2;
    }
    policy.keep_failed = keep_failed;
    if (*create_cmd && !auth::is_valid_owner(owner)) {
        std::cerr << "kilnctl: --owner must be " << auth::owner_rule << "\n";
        return 2;
    }
    if (*migrate_cmd && !std::filesystem::is_directory(migrations_dir)) {
        std::cerr << "kilnctl: no migrations directory " << migrations_dir
                  << (migrations_dir == default_migrations_dir
                          ? " (the installed default); in a checkout give --migrations sql"
                          : "")
                  << "\n";
        return 2;
    }
    policy.orphans_older_than = *orphans;

    auto config = load_config(config_path);
    if (!config) return report(config.error());
    db::init_library();

    if (*migrate_cmd) {
        auto r = db::migrate(config->database, migrations_dir);
        if (!r) return report_unreachable(r.error(), *config);
        for (const auto& name : r->applied) std::cout << "applied " << name << "\n";
        std::cout << "schema version " << r->current_version << "\n";
        return 0;
    }

    auto conn = db::Connection::open(config->database);
    if (!conn) return report_unreachable(conn.error(), *config);
    const jobs::Viewer admin_viewer{"", true};
    if (*cancel_cmd) {
        auto r = jobs::cancel_job(**conn, admin_viewer, cancel_id);
        if (!r) return report(r.error());
        std::cout << (*r == jobs::CancelResult::cancelled ? "cancelled\n"
                                                          : "cancelling (its worker stops it)\n");
        return 0;
    }
    if (*retry_cmd) {
        if (!retry_id.empty()) {
            if (auto r = jobs::retry_job(**conn, admin_viewer, retry_id); !r)
                return report(r.error());
            jobs::WakeupSender(config->wakeup_dir).notify();
            std::cout << "pending again\n";
            return 0;
        }
        auto n = jobs::retry_failed(**conn, retry_type, failed_window);
        if (!n) return report(n.error());
        jobs::WakeupSender(config->wakeup_dir).notify();
        std::cout << *n << (*n == 1 ? " job" : " jobs") << " pending again\n";
        return 0;
    }
    if (*purge_cmd) {
        auto r = jobs::purge(**conn, storage::Storage(config->storage_root), policy);
        if (!r) return report(r.error());
        std::cout << "deleted " << r->completed_deleted << " completed and " << r->failed_deleted
                  << " failed/cancelled jobs; removed " << r->orphan_dirs_removed
                  << " orphan directories and " << r->staging_entries_removed
                  << " staging leftovers; expired " << r->idempotency_keys_expired
                  << " idempotency keys\n";
        return 0;
    }
    if (*create_cmd) {
        auto created = auth::create_token(**conn, owner, admin);
        if (!created) return report(created.error());
        std::cerr << "token " << created->id << " for owner " << owner << (admin ? " (admin)" : "")
                  << "; it is shown only this once\n";
        std::cout << created->token << "\n";
        return 0;
    }
    if (*revoke_cmd) {
        auto revoked = auth::revoke_token(**conn, which);
        if (!revoked) return report(revoked.error());
        if (!*revoked) {
            std::cerr << "kilnctl: no live token matches\n";
            return 1;
        }
        std::cout << "revoked\n";
        return 0;
    }
    if (*list_cmd) {
        auto tokens = auth::list_tokens(**conn);
        if (!tokens) return report(tokens.error());
        for (const auto& t : *tokens) {
            std::cout << t.id << "\t" << t.owner << "\t" << (t.admin ? "admin" : "user") << "\t"
                      << t.created_at << "\t"
                      << (t.revoked_at ? "revoked " + *t.revoked_at : "live") << "\n";
        }
        return 0;
    }
    return 0;
}
