#pragma once
// Schema migrations: sql/NNN_name.sql files applied in order, each recorded in
// schema_migrations so a second run applies nothing.

#include <filesystem>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace kiln::db {

struct MigrationReport {
    std::vector<std::string> applied;  // file names applied by this run
    int current_version = 0;
};

// Applies the missing migrations from `dir`. Fails on the first migration that fails (that one
// is not recorded) or with config when a file name does not start with a number.
Result<MigrationReport> migrate(const DatabaseConfig& config, const std::filesystem::path& dir);

}  // namespace kiln::db
