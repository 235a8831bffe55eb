// kilnctl: the admin CLI. Schema migrations and API tokens for now; jobs, workers and purge
// commands join it as their issues land.

#include <iostream>

#include <CLI/CLI.hpp>

#include "core/auth/tokens.hpp"
#include "core/config.hpp"
#include "core/db/mariadb.hpp"
#include "core/db/migrate.hpp"

namespace {

int report(const kiln::Error& error) {
    std::cerr << "kilnctl: " << error.describe() << "\n";
    return error.code == kiln::ErrorCode::unavailable ? 3 : 1;
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
    std::string migrations_dir = KILN_DEFAULT_MIGRATIONS;
    migrate_cmd->add_option("--migrations", migrations_dir, "directory of NNN_name.sql files");

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

    CLI11_PARSE(cli, argc, argv);

    auto config = load_config(config_path);
    if (!config) return report(config.error());
    db::init_library();

    if (*migrate_cmd) {
        auto r = db::migrate(config->database, migrations_dir);
        if (!r) return report(r.error());
        for (const auto& name : r->applied) std::cout << "applied " << name << "\n";
        std::cout << "schema version " << r->current_version << "\n";
        return 0;
    }

    auto conn = db::Connection::open(config->database);
    if (!conn) return report(conn.error());
    if (*create_cmd) {
        auto created = auth::create_token(**conn, owner, admin);
        if (!created) return report(created.error());
        std::cerr << "token " << created->id << " for owner " << owner
                  << (admin ? " (admin)" : "") << "; it is shown only this once\n";
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
                      << t.created_at << "\t" << (t.revoked_at ? "revoked " + *t.revoked_at : "live")
                      << "\n";
        }
        return 0;
    }
    return 0;
}
