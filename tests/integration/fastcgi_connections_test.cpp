// Connections between nginx and kiln-api as nginx's upstream pool uses them
// (fastcgi_keep_conn): a second kiln-api on its own socket, spoken to with raw FastCGI records.
// - one connection carries many requests;
// - idle pooled connections, more of them than kiln-api has threads, hold no thread: new
//   connections and the pooled ones are all still answered;
// - a request whose body was not read to its end, or that did not ask to keep the connection,
//   closes it, so unread body bytes are never taken for a next request;
// - uploads wait for upload threads of their own, in a bounded queue, and leave the request
//   threads free;
// - SIGTERM lets the request in progress finish.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/support/fcgi_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/multipart.hpp"
#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

bool is_status(const FcgiReply& reply, int status) {
    return reply.ended && reply.stdout_data.rfind("Status: " + std::to_string(status), 0) == 0;
}

class PooledConnections : public ::testing::Test {
  protected:
    void SetUp() override {
        socket_ = scratch_dir() / "api-pooled.sock";
        api_ = start_private_api({}, socket_, "api-pooled.log");
        ASSERT_TRUE(std::filesystem::exists(socket_));
    }

    void TearDown() override {
        EXPECT_EQ(api_->stop(SIGTERM), 0) << "kiln-api stops cleanly with pooled connections open";
    }

    // An upload kiln-api refuses before reading its body: the token is unknown (401).
    static std::vector<std::pair<std::string, std::string>> refused_upload() {
        auto params = fcgi_params("POST", "/api/v1/jobs", "kiln_not_a_token");
        params.emplace_back("CONTENT_TYPE", "multipart/form-data; boundary=x");
        return params;
    }

    std::filesystem::path socket_;
    std::unique_ptr<SpawnedProcess> api_;
};

// A second kiln-api started with the same socket path (a second start of the same config) must
// not take the socket over: the first would stay running but unreachable, and the socket file
// would vanish with the second.
TEST_F(PooledConnections, ASecondApiOnTheSameSocketRefusesToStart) {
    auto second = start_private_api({}, socket_, "api-pooled-second.log");
    std::this_thread::sleep_for(std::chrono::seconds(1));
    EXPECT_EQ(second->stop(SIGTERM, std::chrono::seconds(5)), 1) << read_file(second->log());
    EXPECT_NE(read_file(second->log()).find("another process listens on"), std::string::npos);
    ASSERT_TRUE(std::filesystem::exists(socket_));
    FcgiConnection conn(socket_);
    conn.send(fcgi_params("GET", "/health"));
    EXPECT_TRUE(is_status(conn.receive(), 200));
}

// SIGHUP (a `systemctl reload` habit, a closed terminal) leaves kiln-api serving; TearDown then
// checks that it still stops cleanly on SIGTERM.
TEST_F(PooledConnections, SighupLeavesItServing) {
    ASSERT_EQ(::kill(api_->pid(), SIGHUP), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    FcgiConnection conn(socket_);
    conn.send(fcgi_params("GET", "/health"));
    EXPECT_TRUE(is_status(conn.receive(), 200));
}

TEST_F(PooledConnections, OneConnectionCarriesManyRequests) {
    FcgiConnection conn(socket_);
    for (int i = 0; i < 50; ++i) {
        conn.send(fcgi_params("GET", "/health"));
        FcgiReply reply = conn.receive();
        ASSERT_TRUE(is_status(reply, 200)) << "request " << i << ": " << reply.stdout_data;
    }
    // Authenticated requests and a 404 on the same connection.
    conn.send(fcgi_params("GET", "/api/v1/types", Stack::get().admin_token));
    FcgiReply types = conn.receive();
    EXPECT_TRUE(is_status(types, 200)) << types.stdout_data;
    EXPECT_NE(types.stdout_data.find("image.thumbnails"), std::string::npos);
    conn.send(
        fcgi_params("GET", "/api/v1/jobs/AAAAAAAAAAAAAAAAAAAAAAAAAA", Stack::get().admin_token));
    EXPECT_TRUE(is_status(conn.receive(), 404));
    EXPECT_FALSE(conn.closed_by_server(std::chrono::milliseconds(200)));
}

TEST_F(PooledConnections, IdleConnectionsBeyondTheThreadCountHoldNoThread) {
    // The test stack runs kiln-api with 16 threads (scripts/lib/config.sh).
    constexpr int pooled = 40;
    std::vector<std::unique_ptr<FcgiConnection>> pool;
    for (int i = 0; i < pooled; ++i) {
        pool.push_back(std::make_unique<FcgiConnection>(socket_));
        pool.back()->send(fcgi_params("GET", "/health"));
        FcgiReply reply = pool.back()->receive();
        ASSERT_TRUE(is_status(reply, 200))
            << "pooled connection " << i << ": " << reply.stdout_data;
    }
    // All 40 now sit idle and open, as in nginx's pool. A new connection is still served...
    FcgiConnection fresh(socket_);
    fresh.send(fcgi_params("GET", "/health"));
    EXPECT_TRUE(is_status(fresh.receive(), 200));
    // ...and so is the next request on every pooled one, newest first.
    for (int i = pooled - 1; i >= 0; --i) {
        pool[static_cast<std::size_t>(i)]->send(fcgi_params("GET", "/health"));
        EXPECT_TRUE(is_status(pool[static_cast<std::size_t>(i)]->receive(), 200))
            << "second request on pooled connection " << i;
    }
}

TEST_F(PooledConnections, BodyNotReadToItsEndClosesTheConnection) {
    auto params = fcgi_params("POST", "/api/v1/jobs", Stack::get().admin_token);
    params.emplace_back("CONTENT_TYPE", "multipart/form-data; boundary=x");
    FcgiConnection conn(socket_);
    // Declared far over the request size limit: refused before the body is read.
    conn.send(params, std::string(1000, 'a'), std::size_t{1} << 40);
    FcgiReply reply = conn.receive();
    EXPECT_TRUE(is_status(reply, 413)) << reply.stdout_data;
    EXPECT_TRUE(conn.closed_by_server());
}

// nginx pools a connection once it has sent the whole body, whatever kiln-api read of it. A small
// body refused before it was read (a 401) is read to its end and dropped, so the connection
// carries the next request; closed, it would fail the POST nginx sends on it next.
TEST_F(PooledConnections, ASmallBodyRefusedUnreadKeepsTheConnection) {
    FcgiConnection conn(socket_);
    conn.send(refused_upload(), std::string(20000, 'a'));
    FcgiReply refused = conn.receive();
    EXPECT_TRUE(is_status(refused, 401)) << refused.stdout_data;
    conn.send(fcgi_params("GET", "/health"));
    FcgiReply next = conn.receive();
    EXPECT_TRUE(is_status(next, 200)) << next.stdout_data;
    EXPECT_FALSE(conn.closed_by_server(std::chrono::milliseconds(200)));
}

// A refused body whose rest is not there yet is not waited for (it could trickle in for
// minutes): the connection is closed within a moment instead.
TEST_F(PooledConnections, ARefusedBodyStillOnItsWayClosesTheConnection) {
    FcgiConnection conn(socket_);
    conn.send(refused_upload(), std::string(100, 'a'), 200);
    EXPECT_TRUE(is_status(conn.receive(), 401));
    EXPECT_TRUE(conn.closed_by_server(std::chrono::seconds(2)));
}

// Nor is a rest trickled in, a byte just before each read would give up: the 100 ms are for the
// whole rest, so a client without a token cannot hold an upload thread this way. (The answer's
// end record comes once the connection's fate is decided, so it shows how long that took.)
TEST_F(PooledConnections, ARefusedBodyTrickledInDoesNotHoldAThread) {
    FcgiConnection conn(socket_);
    conn.send(refused_upload(), std::string(10, 'a'), 1000);
    std::atomic<bool> done = false;
    std::thread trickle([&] {  // a byte every 50 ms, for up to 2 s
        for (int i = 0; i < 40 && !done; ++i) {
            try {
                conn.send_body("a", false);
            } catch (const std::exception&) {
                return;  // closed by the server
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });
    const auto started = std::chrono::steady_clock::now();
    FcgiReply reply = conn.receive(std::chrono::seconds(5));
    const auto took = std::chrono::steady_clock::now() - started;
    done = true;
    trickle.join();
    EXPECT_TRUE(is_status(reply, 401)) << reply.stdout_data;
    EXPECT_LT(took, std::chrono::milliseconds(1000))
        << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    EXPECT_TRUE(conn.closed_by_server(std::chrono::seconds(1)));
}

// SIGTERM while an upload is half sent: kiln-api finishes that request (the job is created),
// closes its idle pooled connections and its socket path at once, and exits cleanly.
TEST_F(PooledConnections, SigtermLetsTheUploadInProgressFinish) {
    const std::string body = multipart::upload(
        "image.thumbnails", "pattern.png", read_file(media::png()) + std::string(1 << 20, '\0'));
    auto params = fcgi_params("POST", "/api/v1/jobs", Stack::get().admin_token);
    params.emplace_back("CONTENT_TYPE", multipart::content_type());
    FcgiConnection uploading(socket_);
    FcgiConnection idle(socket_);
    idle.send(fcgi_params("GET", "/health"));
    ASSERT_TRUE(is_status(idle.receive(), 200));

    const std::size_t half = body.size() / 2;
    uploading.send(params, body.substr(0, half), body.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // kiln-api is reading it
    ASSERT_EQ(::kill(api_->pid(), SIGTERM), 0);
    // Meanwhile nothing waits for the exit: the idle pooled connection is closed and the socket
    // path removed, so nginx answers 503 at once instead of holding requests until the upload
    // ends.
    EXPECT_TRUE(idle.closed_by_server(std::chrono::seconds(1)))
        << "the idle pooled connection is closed at once";
    EXPECT_FALSE(std::filesystem::exists(socket_));
    uploading.send_body(body.substr(half), true);
    FcgiReply reply = uploading.receive();
    ASSERT_TRUE(is_status(reply, 201)) << reply.stdout_data.substr(0, 400);
    const std::string id =
        nlohmann::json::parse(reply.stdout_data.substr(reply.stdout_data.find('{')))["id"];
    EXPECT_EQ(Stack::get().admin().get("/api/v1/jobs/" + id).status, 200) << "the job was stored";
    EXPECT_TRUE(uploading.closed_by_server()) << "a stopping kiln-api pools no connection";
}

// A client that trickles its upload (a byte now and then, under nginx's idle timeout) would hold
// an upload thread for as long as it likes: a body must bring 32 KiB in every 30 s, else it is
// answered 408 and nothing is kept.
TEST_F(PooledConnections, AnUploadSlowerThanTheMinimumPaceIs408AndKeepsNothing) {
    const std::string body = multipart::upload("test.noop", "slow.png", read_file(media::png()));
    auto params = fcgi_params("POST", "/api/v1/jobs", Stack::get().admin_token);
    params.emplace_back("CONTENT_TYPE", multipart::content_type());
    const auto rows = Stack::get().job_rows();
    FcgiConnection trickling(socket_);
    trickling.send(params, body.substr(0, 10), body.size());
    std::this_thread::sleep_for(std::chrono::seconds(31));
    trickling.send_body(body.substr(10, 1), false);
    FcgiReply reply = trickling.receive(std::chrono::seconds(10));
    EXPECT_TRUE(is_status(reply, 408)) << reply.stdout_data.substr(0, 400);
    EXPECT_NE(reply.stdout_data.find("request_timeout"), std::string::npos);
    EXPECT_EQ(Stack::get().job_rows(), rows);
    EXPECT_TRUE(Stack::get().staged_upload_files().empty());
}

// Uploads have threads of their own: clients slow to send their bodies, more of them than there
// are upload threads, wait in a bounded queue and leave the request threads to everyone else.
TEST_F(PooledConnections, SlowUploadsQueueForTheirOwnThreadsAndLeaveTheRestFree) {
    // The test stack runs kiln-api with 16 request and 16 upload threads (scripts/lib/config.sh):
    // 16 uploads are read, 128 wait, and the one beyond is answered 503 at once.
    constexpr std::size_t upload_threads = 16;
    constexpr std::size_t capacity = upload_threads + 8 * upload_threads;
    const std::string token = Stack::get().admin_token;
    // test.noop: the 144 jobs cost the stack's workers nothing.
    const std::string body = multipart::upload("test.noop", "slow.png", read_file(media::png()));
    const std::size_t half = body.size() / 2;
    auto params = fcgi_params("POST", "/api/v1/jobs", token);
    params.emplace_back("CONTENT_TYPE", multipart::content_type());
    std::vector<std::unique_ptr<FcgiConnection>> slow;
    for (std::size_t i = 0; i < capacity + 1; ++i) {
        slow.push_back(std::make_unique<FcgiConnection>(socket_));
        slow.back()->send(params, body.substr(0, half), body.size());
    }

    // More requests than there are request threads, each answered while the uploads wait.
    for (int i = 0; i < 24; ++i) {
        FcgiConnection other(socket_);
        other.send(fcgi_params("GET", "/api/v1/types", token));
        EXPECT_TRUE(is_status(other.receive(std::chrono::seconds(5)), 200)) << "request " << i;
    }

    // Every upload is answered: all but one stored, whichever one came last refused. The rest of
    // every body is sent first: which ones are being read and which wait is kiln-api's choice.
    for (auto& c : slow) {
        try {
            c->send_body(body.substr(half), true);
        } catch (const std::exception&) {
            // The refused upload's connection may be closed: its answer is still there to read.
        }
    }
    std::size_t created = 0;
    std::size_t refused = 0;
    for (std::size_t i = 0; i < slow.size(); ++i) {
        FcgiReply reply = slow[i]->receive(std::chrono::seconds(30));
        if (is_status(reply, 201)) {
            ++created;
        } else if (is_status(reply, 503)) {
            ++refused;
            EXPECT_NE(reply.stdout_data.find("Retry-After: 1"), std::string::npos);
            EXPECT_TRUE(slow[i]->closed_by_server());
        } else {
            ADD_FAILURE() << "upload " << i << ": " << reply.stdout_data.substr(0, 300);
        }
    }
    EXPECT_EQ(created, capacity);
    EXPECT_EQ(refused, 1u);
}

TEST_F(PooledConnections, RequestWithoutKeepConnClosesTheConnection) {
    FcgiConnection conn(socket_);
    conn.send(fcgi_params("GET", "/health"), "", std::nullopt, /*keep_connection=*/false);
    EXPECT_TRUE(is_status(conn.receive(), 200));
    EXPECT_TRUE(conn.closed_by_server());
}

}  // namespace
}  // namespace kiln::test
