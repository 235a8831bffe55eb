// A kiln-api whose database is unreachable answers 503 problems with Retry-After, fast, and
// never 500. It is a second kiln-api started by the test on its own socket with a database
// address that does not exist, spoken to over FastCGI directly (cgi-fcgi), so the shared stack
// keeps its database.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class DatabaseDown : public ::testing::Test {
protected:
    void SetUp() override {
        const Stack& stack = Stack::get();
        socket_ = scratch_dir() / "api-no-db.sock";
        ::setenv("KILN_DB", "mariadb://root@localhost/kiln?socket=/nonexistent/mysqld.sock", 1);
        ::setenv("KILN_API_LISTEN", socket_.c_str(), 1);
        api_ = std::make_unique<SpawnedProcess>(
            std::vector<std::string>{(stack.kilnctl.parent_path().parent_path() / "fcgi" /
                                      "kiln-api").string(),
                                     "--config", stack.config_path.string()},
            scratch_dir() / "api-no-db.log");
        ::unsetenv("KILN_DB");
        ::unsetenv("KILN_API_LISTEN");
        for (int i = 0; i < 200 && !std::filesystem::exists(socket_); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
        ASSERT_TRUE(std::filesystem::exists(socket_));
    }

    void TearDown() override { EXPECT_EQ(api_->stop(SIGTERM), 0) << "kiln-api stops cleanly"; }

    // The raw FastCGI response (CGI headers and body) for a GET of `path`.
    std::string fcgi_get(const std::string& path, const std::string& token = "") {
        ::setenv("REQUEST_METHOD", "GET", 1);
        ::setenv("DOCUMENT_URI", path.c_str(), 1);
        ::setenv("QUERY_STRING", "", 1);
        if (!token.empty()) ::setenv("HTTP_AUTHORIZATION", ("Bearer " + token).c_str(), 1);
        std::string out = run_command({"cgi-fcgi", "-bind", "-connect", socket_.string()});
        ::unsetenv("HTTP_AUTHORIZATION");
        return out;
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

}  // namespace
}  // namespace kiln::test
