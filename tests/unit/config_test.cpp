#include "core/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace kiln {
namespace {

class ConfigFile : public ::testing::Test {
  protected:
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("kiln-config-" + std::to_string(getpid()) + ".toml");
    void write(const std::string& text) { std::ofstream(path) << text; }
    void TearDown() override {
        std::filesystem::remove(path);
        for (const char* v : {"KILN_DB", "KILN_STORAGE", "KILN_CONVERTERS"}) ::unsetenv(v);
    }
};

TEST_F(ConfigFile, ReadsEverySection) {
    write(R"(
[database]
socket = "/run/mysqld/mysqld.sock"
user = "kiln"
name = "jobs"
[storage]
root = "/srv/kiln"
[converters]
dirs = ["/a", "/b"]
[api]
threads = 4
upload_threads = 6
max_parts = 8
queue_position_cap = 250
[worker]
slots = 3
types = ["video.transcode"]
lease_seconds = 20
)");
    auto c = load_config(path);
    ASSERT_TRUE(c.has_value()) << c.error().describe();
    EXPECT_EQ(c->database.socket, "/run/mysqld/mysqld.sock");
    EXPECT_EQ(c->database.name, "jobs");
    EXPECT_EQ(c->storage_root, "/srv/kiln");
    EXPECT_EQ(c->converter_dirs.size(), 2u);
    EXPECT_EQ(c->api.threads, 4u);
    EXPECT_EQ(c->api.upload_threads, 6u);
    EXPECT_EQ(c->api.max_parts, 8u);
    EXPECT_EQ(c->api.queue_position_cap, 250u);
    EXPECT_EQ(c->worker.slots, 3u);
    EXPECT_EQ(c->worker.types, std::vector<std::string>{"video.transcode"});
    EXPECT_EQ(c->worker.lease, std::chrono::seconds(20));
}

TEST_F(ConfigFile, AnUnknownKeyIsAnErrorNamingIt) {
    write("[api]\nthreds = 4\n");
    auto c = load_config(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, ErrorCode::config);
    EXPECT_NE(c.error().message.find("api.threds"), std::string::npos) << c.error().message;
}

TEST_F(ConfigFile, AWrongTypeIsAnError) {
    write("[api]\nthreads = \"four\"\n");
    EXPECT_FALSE(load_config(path).has_value());
}

TEST_F(ConfigFile, AQueuePositionCapOutsideItsRangeIsAnError) {
    for (const char* cap : {"0", "100001"}) {
        write(std::string("[api]\nqueue_position_cap = ") + cap + "\n");
        auto c = load_config(path);
        ASSERT_FALSE(c.has_value()) << cap;
        EXPECT_NE(c.error().message.find("queue_position_cap"), std::string::npos)
            << c.error().message;
    }
    write("[api]\nqueue_position_cap = 100000\n");
    EXPECT_TRUE(load_config(path).has_value());
}

TEST_F(ConfigFile, ThreadCountsOutsideTheirRangeAreErrors) {
    for (const char* line : {"threads = 0", "upload_threads = 0", "upload_threads = 1025"}) {
        write(std::string("[api]\n") + line + "\n");
        auto c = load_config(path);
        ASSERT_FALSE(c.has_value()) << line;
        EXPECT_NE(c.error().message.find(std::string(line).substr(0, std::string(line).find(' '))),
                  std::string::npos)
            << c.error().message;
    }
}

TEST_F(ConfigFile, WorkerTimingsOutsideTheirRangeAreErrors) {
    // A lease of 0 s would have every job reaped at once; a poll of 0 ms claims in a busy loop.
    for (const char* lines : {"lease_seconds = 1", "lease_seconds = 3601", "poll_min_ms = 0",
                              "poll_min_ms = 5000\npoll_max_ms = 10", "poll_max_ms = 60001",
                              "grace_seconds = 3601", "prefetch = 257"}) {
        write(std::string("[worker]\n") + lines + "\n");
        auto c = load_config(path);
        ASSERT_FALSE(c.has_value()) << lines;
        const std::string key(lines, std::string_view(lines).find(' '));
        EXPECT_NE(c.error().message.find("worker." + key), std::string::npos) << c.error().message;
    }
    write("[worker]\nlease_seconds = 2\npoll_min_ms = 10\npoll_max_ms = 10\n");
    EXPECT_TRUE(load_config(path).has_value());
}

TEST_F(ConfigFile, ASyntaxErrorNamesTheLine) {
    write("[api]\nthreads = \n");
    auto c = load_config(path);
    ASSERT_FALSE(c.has_value());
    EXPECT_NE(c.error().message.find(":2"), std::string::npos) << c.error().message;
}

TEST_F(ConfigFile, AnExplicitFileThatDoesNotExistIsAnError) {
    EXPECT_FALSE(load_config(std::filesystem::path("/nonexistent/kiln.toml")).has_value());
}

TEST_F(ConfigFile, EnvironmentOverridesTheFile) {
    write("[storage]\nroot = \"/srv/kiln\"\n");
    ::setenv("KILN_STORAGE", "/data/kiln", 1);
    ::setenv("KILN_CONVERTERS", "/x:/y", 1);
    ::setenv("KILN_DB", "mariadb://app:s3cret@db.example:3307/kilnprod", 1);
    auto c = load_config(path);
    ASSERT_TRUE(c.has_value()) << c.error().describe();
    EXPECT_EQ(c->storage_root, "/data/kiln");
    EXPECT_EQ(c->converter_dirs, (std::vector<std::filesystem::path>{"/x", "/y"}));
    EXPECT_EQ(c->database.user, "app");
    EXPECT_EQ(c->database.password, "s3cret");
    EXPECT_EQ(c->database.host, "db.example");
    EXPECT_EQ(c->database.port, 3307u);
    EXPECT_EQ(c->database.name, "kilnprod");
}

TEST(DatabaseUrl, ASocketGoesInTheQuery) {
    DatabaseConfig db;
    ASSERT_TRUE(parse_database_url("mariadb://root@localhost/kiln?socket=/var/run/m.sock", db));
    EXPECT_EQ(db.socket, "/var/run/m.sock");
    EXPECT_EQ(db.user, "root");
    EXPECT_EQ(db.password, "");
}

TEST(DatabaseUrl, MalformedUrlsAreRejected) {
    DatabaseConfig db;
    for (const char* url : {"mysql://a@b/c", "mariadb://b/c", "mariadb://a@b", "mariadb://a@b:x/c",
                            "mariadb://@b/c"}) {
        EXPECT_FALSE(parse_database_url(url, db).has_value()) << url;
    }
}

}  // namespace
}  // namespace kiln
