// Resource outages seen by a second kiln-api that the test starts on its own socket, spoken to
// over FastCGI directly (cgi-fcgi) so the shared stack keeps its database and disk:
// - its database address does not exist: 503 problems with Retry-After, fast, never 500;
// - its storage is a full 1 MiB tmpfs: an upload is 507 and leaves no file and no row.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>

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

}  // namespace
}  // namespace kiln::test
