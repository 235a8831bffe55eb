#pragma once
// Command-line parsing for kiln's programs. CLI11 exits with its own status per kind of error
// (105, 106, 109...); kiln's programs exit 2 on any bad usage, which the units'
// RestartPreventExitStatus=2 and admins' scripts rely on.

#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace kiln::util {

namespace detail {

// The first word a parse left over, in `app` or the subcommands it parsed: when a required
// subcommand is missing, that word is the unknown command the user meant.
inline std::optional<std::string> first_leftover(CLI::App& app) {
    if (auto rest = app.remaining(); !rest.empty()) return rest.front();
    for (CLI::App* sub : app.get_subcommands()) {
        if (auto word = first_leftover(*sub)) return word;
    }
    return std::nullopt;
}

}  // namespace detail

// Parses the command line into `cli`. Returns the exit status when the program should end now:
// 0 after --help, 2 after printing what was wrong; nullopt when it should go on.
inline std::optional<int> parse_command_line(CLI::App& cli, const std::string& program, int argc,
                                             char** argv) {
    try {
        cli.parse(argc, argv);
        return std::nullopt;
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return cli.exit(e);  // --help
        auto word = detail::first_leftover(cli);
        if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && word &&
            !word->starts_with('-')) {
            std::cerr << program << ": unknown command '" << *word << "'\n"
                      << "Run with --help for more information.\n";
        } else {
            std::cerr << program << ": ";
            cli.exit(e);
        }
        return 2;
    }
}

}  // namespace kiln::util
