#pragma once
// Schema migrations: sql/NNN_name.sql files applied in order, each recorded in
// schema_migrations so a second run applies nothing.

#include <filesystem>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace kiln::db {

class Connection;

// The schema version this code needs: the number of the last migration in sql/ (a unit test
// checks that they agree).
constexpr int required_schema_version = 3;

// Fails with unavailable, naming the fix (kilnctl migrate), when the database has no kiln
// schema or an older one than required_schema_version: binaries installed before their
// migrations ran answer 503 with the reason instead of failing statement by statement.
Result<> check_schema_version(Connection& conn);

struct MigrationReport {
    std::vector<std::string> applied;  // file names applied by this run
    int current_version = 0;
};

// Applies the missing migrations from `dir`. Fails on the first migration that fails (that one
// is not recorded) or with config when a file name does not start with a number.
Result<MigrationReport> migrate(const DatabaseConfig& config, const std::filesystem::path& dir);

}  // namespace kiln::db
