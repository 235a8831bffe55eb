// Resource outages seen by a second kiln-api that the test starts on its own socket, spoken to
// over FastCGI directly (cgi-fcgi) so the shared stack keeps its database and disk:
// - its database address does not exist: 503 problems with Retry-After, fast, never 500;
// - its storage is a full 1 MiB tmpfs: an upload is 507 and leaves no file and no row;
// - its database has an older schema than it needs: 503, and the log says to migrate;
// - its database connection is cut while an upload streams in: the upload still makes its job.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/db/migrate.hpp"
#include "tests/integration/support/db_proxy.hpp"
#include "tests/integration/support/fcgi_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/multipart.hpp"
#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"
#include "tests/integration/support/tmpfs.hpp"

namespace kiln::test {
namespace {

class DatabaseDown : public ::testing::Test {
  protected:
    void SetUp() override {
        socket_ = scratch_dir() / "api-no-db.sock";
        api_ = start_private_api(
            {{"KILN_DB", "mariadb://root@localhost/kiln?socket=/nonexistent/mysqld.sock"}}, socket_,
            "api-no-db.log");
        ASSERT_TRUE(std::filesystem::exists(socket_));
    }

    void TearDown() override { EXPECT_EQ(api_->stop(SIGTERM), 0) << "kiln-api stops cleanly"; }

    std::string fcgi_get(const std::string& path, const std::string& token = "") {
        return fcgi_request(socket_, "GET", path, token);
    }

    std::filesystem::path socket_;
    std::unique_ptr<SpawnedProcess> api_;
};

TEST_F(DatabaseDown, HealthIs503WithRetryAfterWithinOneSecond) {
    const auto started = std::chrono::steady_clock::now();
    std::string reply = fcgi_get("/health");
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(reply.rfind("Status: 503", 0), 0u) << reply;
    EXPECT_NE(reply.find("Retry-After: 1"), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"code\":\"unavailable\""), std::string::npos) << reply;
    EXPECT_NE(reply.find("\"database\":\"unavailable\""), std::string::npos) << reply;
    EXPECT_LT(took, std::chrono::seconds(1));
}

// Binaries installed before `kilnctl migrate` ran: their database is at schema version 2. The
// API answers 503 and logs what to run, and serves, without a restart, once it has run.
TEST(SchemaBehind, AnApiOnAnOlderSchemaIs503AndLogsKilnctlMigrateUntilItRuns) {
    const Stack& stack = Stack::get();
    const auto old_sql = scratch_dir() / "sql-v2";
    std::filesystem::create_directories(old_sql);
    for (const char* name : {"001_initial.sql", "002_reliability.sql"}) {
        std::filesystem::copy_file(source_dir() / "sql" / name, old_sql / name,
                                   std::filesystem::copy_options::overwrite_existing);
    }
    PrivateDatabase database("schema_test", old_sql);
    ASSERT_EQ(database.migrate(old_sql), 2) << "the database starts at schema version 2";
    const DatabaseConfig& db = database.config();

    const auto socket = scratch_dir() / "api-old-schema.sock";
    auto api = start_private_api(
        {{"KILN_DB", "mariadb://" + db.user + "@localhost/" + db.name + "?socket=" + db.socket}},
        socket, "api-old-schema.log");
    ASSERT_TRUE(std::filesystem::exists(socket));
    std::string reply = fcgi_request(socket, "GET", "/api/v1/types", stack.admin_token);
    EXPECT_EQ(reply.rfind("Status: 503", 0), 0u) << reply;
    EXPECT_NE(read_file(api->log()).find("schema is at version 2, this kiln needs "),
              std::string::npos)
        << read_file(api->log());
    EXPECT_NE(read_file(api->log()).find("run kilnctl migrate"), std::string::npos);

    EXPECT_EQ(database.migrate(source_dir() / "sql"), db::required_schema_version);
    reply = fcgi_request(socket, "GET", "/health", "");
    EXPECT_EQ(reply.rfind("Status: 200", 0), 0u) << reply;
    EXPECT_EQ(api->stop(SIGTERM), 0);
}

TEST_F(DatabaseDown, ApiRequestsAre503NeverAnythingElse) {
    for (const char* path : {"/api/v1/jobs", "/api/v1/types", "/api/v1/jobs/abc"}) {
        std::string reply = fcgi_get(path, Stack::get().admin_token);
        EXPECT_EQ(reply.rfind("Status: 503", 0), 0u) << path << "\n" << reply;
        EXPECT_NE(reply.find("application/problem+json"), std::string::npos) << reply;
        // The problem never leaks the socket path or the driver's message.
        EXPECT_EQ(reply.find("nonexistent"), std::string::npos) << reply;
    }
}

// A private kiln-api whose storage root is a 1 MiB tmpfs.
class DiskFull : public ::testing::Test {
  protected:
    void SetUp() override {
        storage_ = std::make_unique<TmpfsMount>("full-storage", "1m");
        socket_ = scratch_dir() / "api-full.sock";
        api_ = start_private_api({{"KILN_STORAGE", storage_->path().string()}}, socket_,
                                 "api-full.log");
        ASSERT_TRUE(std::filesystem::exists(socket_));
    }

    void TearDown() override {
        if (api_) api_->stop(SIGTERM);
        storage_.reset();
    }

    std::unique_ptr<TmpfsMount> storage_;
    std::filesystem::path socket_;
    std::unique_ptr<SpawnedProcess> api_;
};

TEST_F(DiskFull, AnUploadThatFillsTheDiskIs507AndLeavesNoFileAndNoRow) {
    const Stack& stack = Stack::get();
    // A 3 MB "video" (an MP4 head and zeros) into 1 MiB of space.
    std::ifstream head_in(media::mp4(), std::ios::binary);
    std::string head((std::istreambuf_iterator<char>(head_in)), std::istreambuf_iterator<char>());
    const std::string body =
        multipart::upload("video.transcode", "big.mp4", head + std::string(3'000'000, '\0'));

    const auto rows = stack.job_rows();
    std::string reply = fcgi_request(socket_, "POST", "/api/v1/jobs", stack.admin_token, body,
                                     multipart::content_type());

    EXPECT_EQ(reply.rfind("Status: 507", 0), 0u) << reply.substr(0, 400);
    EXPECT_NE(reply.find("\"code\":\"insufficient_storage\""), std::string::npos) << reply;
    EXPECT_EQ(stack.job_rows(), rows);
    std::size_t files = 0;
    for (auto& entry : std::filesystem::recursive_directory_iterator(storage_->path())) {
        files += entry.is_regular_file() ? 1 : 0;
    }
    EXPECT_EQ(files, 0u) << "the partial upload was removed";
}

// The database restarts (or drops the idle connection) while an upload streams in: kiln-api
// finds its connection gone only when it uses it again, after the body. It must take a fresh
// one then, not answer 503 after the whole upload and leave the published files without a row.
TEST(DatabaseCut, AConnectionCutDuringAnUploadIsReplacedAndTheJobIsCreated) {
    const Stack& stack = Stack::get();
    DbProxy proxy(scratch_dir() / "db-proxy-upload.sock", stack.config.database.socket);
    const auto socket = scratch_dir() / "api-db-cut.sock";
    auto api = start_private_api(
        {{"KILN_DB", proxy.url(stack.config.database.user, stack.config.database.name)}}, socket,
        "api-db-cut.log");
    ASSERT_TRUE(std::filesystem::exists(socket));

    const std::string body = multipart::upload(
        "image.thumbnails", "pattern.png", read_file(media::png()) + std::string(1 << 20, '\0'));
    auto params = fcgi_params("POST", "/api/v1/jobs", stack.admin_token);
    params.emplace_back("CONTENT_TYPE", multipart::content_type());
    FcgiConnection conn(socket);
    const std::size_t half = body.size() / 2;
    conn.send(params, body.substr(0, half), body.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // kiln-api is reading it
    proxy.cut_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the relay has closed
    conn.send_body(body.substr(half), true);
    FcgiReply reply = conn.receive();
    ASSERT_TRUE(reply.ended);
    ASSERT_EQ(reply.stdout_data.rfind("Status: 201", 0), 0u) << reply.stdout_data.substr(0, 600);
    const std::string id =
        nlohmann::json::parse(reply.stdout_data.substr(reply.stdout_data.find('{')))["id"];
    auto job = stack.admin().get("/api/v1/jobs/" + id);
    ASSERT_EQ(job.status, 200) << "the job was stored";
    const std::string name = job.json()["sources"][0]["name"];
    EXPECT_TRUE(std::filesystem::exists(stack.config.storage_root / "sources" / id / name));
    EXPECT_EQ(api->stop(SIGTERM), 0);
}

}  // namespace
}  // namespace kiln::test
