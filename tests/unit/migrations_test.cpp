// The schema version the binaries require is the last migration shipped in sql/: a new
// migration without a new required_schema_version (or the reverse) fails here.

#include <gtest/gtest.h>

#include <charconv>
#include <filesystem>

#include "core/db/migrate.hpp"

namespace kiln::db {
namespace {

TEST(Migrations, TheRequiredSchemaVersionIsTheLastMigrationInSql) {
    int last = 0;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::path(KILN_SOURCE_DIR) / "sql")) {
        const std::string name = entry.path().filename().string();
        int version = 0;
        std::from_chars(name.data(), name.data() + name.size(), version);
        last = std::max(last, version);
    }
    EXPECT_EQ(required_schema_version, last);
}

}  // namespace
}  // namespace kiln::db
