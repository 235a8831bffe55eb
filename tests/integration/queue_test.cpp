// The queue across several worker processes: every job runs exactly once, and a worker stopped
// with SIGTERM hands its job back for another worker to finish. These tests start their own
// workers for test.controlled, a converter the stack's workers do not load.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <thread>

#include "core/db/mariadb.hpp"
#include "tests/integration/support/db_proxy.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/jobs.hpp"
#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

std::unique_ptr<SpawnedProcess> start_worker(const std::string& name, int slots,
                                             int grace_seconds = 30, const EnvOverrides& env = {}) {
    const Stack& stack = Stack::get();
    return std::make_unique<SpawnedProcess>(
        std::vector<std::string>{worker_binary().string(), "--config", stack.config_path.string(),
                                 "--types", "test.controlled", "--slots", std::to_string(slots),
                                 "--name", name, "--grace-seconds", std::to_string(grace_seconds),
                                 "--lease-seconds", "60"},
        scratch_dir() / (name + ".log"), env);
}

// Executions per job id, read from the workers' "job finished" log lines.
std::map<std::string, int> completed_runs(const std::vector<std::filesystem::path>& logs) {
    std::map<std::string, int> runs;
    for (const auto& log : logs) {
        std::ifstream in(log);
        for (std::string line; std::getline(in, line);) {
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_object() && j.value("msg", "") == "job finished" &&
                j.value("outcome", "") == "completed") {
                ++runs[j.value("job", "")];
            }
        }
    }
    return runs;
}

TEST(Queue, FiveHundredJobsAcrossThreeWorkersOfFourSlotsRunExactlyOnceEach) {
    const Stack& stack = Stack::get();
    Client client = stack.admin();
    std::vector<std::unique_ptr<SpawnedProcess>> workers;
    for (int i = 1; i <= 3; ++i)
        workers.push_back(start_worker("exactly-once-" + std::to_string(i), 4));

    std::vector<std::string> ids;
    for (int i = 0; i < 500; ++i) {
        auto r = client.post_json("/api/v1/jobs", R"({"type":"test.controlled"})");
        ASSERT_EQ(r.status, 201) << r.body;
        ids.push_back(r.json()["id"]);
    }
    for (const auto& id : ids) {
        auto w = watch_job(client, id, std::chrono::seconds(60));
        ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    }
    std::vector<std::filesystem::path> logs;
    for (auto& w : workers) {
        EXPECT_EQ(w->stop(SIGTERM), 0);
        logs.push_back(w->log());
    }
    auto runs = completed_runs(logs);
    int once = 0, twice = 0;
    for (const auto& id : ids) {
        if (runs[id] == 1) ++once;
        if (runs[id] > 1) ++twice;
    }
    std::cout << "created 500, ran once " << once << ", ran more than once " << twice << "\n";
    EXPECT_EQ(once, 500);
    EXPECT_EQ(twice, 0);
}

TEST(Queue, SigtermDuringALongJobReturnsItToPendingAndAnotherWorkerCompletesIt) {
    const Stack& stack = Stack::get();
    Client client = stack.admin();
    auto first = start_worker("sigterm-first", 1, /*grace_seconds=*/0);

    auto r = client.post_json("/api/v1/jobs",
                              R"({"type":"test.controlled","params":{"sleep_ms":4000}})");
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json()["id"];
    // Wait until the first worker runs it.
    nlohmann::json job;
    for (int i = 0; i < 200; ++i) {
        job = client.get("/api/v1/jobs/" + id).json();
        if (job["status"] == "running") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_EQ(job["status"], "running") << job.dump();

    EXPECT_EQ(first->stop(SIGTERM), 0);
    job = client.get("/api/v1/jobs/" + id).json();
    EXPECT_EQ(job["status"], "pending") << job.dump();
    EXPECT_EQ(job["attempts"], 0) << "a shutdown does not count as an attempt";

    auto second = start_worker("sigterm-second", 1);
    auto w = watch_job(client, id, std::chrono::seconds(30));
    EXPECT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_EQ(w.job["attempts"], 1);
    EXPECT_EQ(second->stop(SIGTERM), 0);
    EXPECT_EQ(completed_runs({second->log()})[id], 1);
    EXPECT_EQ(completed_runs({first->log()})[id], 0);
}

// The connection breaks after the claim's COMMIT was applied and before its answer came: the
// worker cannot know that it holds the job. It hands the job back on its next connection, so
// the job runs at once with its attempt counted once, instead of sitting "running" until the
// 60 s lease runs out and then being retried as a second attempt.
TEST(Queue, AClaimWhoseCommitGetsNoAnswerHandsItsJobBackAndTheJobRunsAtOnce) {
    const Stack& stack = Stack::get();
    Client client = stack.admin();
    DbProxy proxy(scratch_dir() / "db-proxy.sock", stack.config.database.socket);
    auto worker = start_worker(
        "lost-commit", 1, 30,
        {{"KILN_DB", proxy.url(stack.config.database.user, stack.config.database.name)}});
    proxy.break_next_claim_commit();

    auto r = client.post_json("/api/v1/jobs", R"({"type":"test.controlled"})");
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json()["id"];
    auto w = watch_job(client, id, std::chrono::seconds(20));
    EXPECT_EQ(proxy.broken(), 1) << "the fault did not fire";
    EXPECT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_EQ(w.job["attempts"], 1) << w.job.dump();
    EXPECT_EQ(worker->stop(SIGTERM), 0);
    EXPECT_EQ(completed_runs({worker->log()})[id], 1);
    EXPECT_NE(read_file(worker->log()).find("handed back jobs of a claim"), std::string::npos);
}

// The reaper gave a job back while its worker was alive and still running it (the worker could
// not renew for longer than the lease), and the same worker claimed it again: the earlier run
// is stopped then, so the job does not run twice at once and the earlier run's end does not
// untrack the new one.
TEST(Queue, AJobClaimedAgainByTheWorkerStillRunningItDoesNotRunTwiceAtOnce) {
    const Stack& stack = Stack::get();
    Client client = stack.admin();
    auto worker = start_worker("reclaims", 2);
    auto r = client.post_json("/api/v1/jobs",
                              R"({"type":"test.controlled","params":{"sleep_ms":3000}})");
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json()["id"];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (client.get("/api/v1/jobs/" + id).json()["status"] != "running" &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // What the reaper does to an expired lease, done now.
    auto conn = db::Connection::open(stack.config.database);
    ASSERT_TRUE(conn) << conn.error().describe();
    auto reaped = (*conn)->execute(
        "UPDATE jobs SET status = 'pending', worker = NULL, lease_token = NULL, "
        "lease_expires_at = NULL, run_at = NOW(3) WHERE id = ? AND status = 'running'",
        {id});
    ASSERT_TRUE(reaped && *reaped == 1) << "the job was not running";

    auto w = watch_job(client, id, std::chrono::seconds(20));
    EXPECT_EQ(w.job["status"], "completed") << w.job.dump();
    EXPECT_EQ(w.job["attempts"], 2) << w.job.dump();
    EXPECT_EQ(worker->stop(SIGTERM), 0);
    // The first attempt ended when the job was claimed again, not after its whole 3 s.
    std::ifstream in(worker->log());
    int first_runs = 0;
    for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_object() || j.value("msg", "") != "job finished" || j.value("job", "") != id ||
            j.value("attempt", 0) != 1) {
            continue;
        }
        ++first_runs;
        EXPECT_LT(j.value("ms", 0), 2000) << line;
        EXPECT_NE(j.value("outcome", ""), "completed") << line;
    }
    EXPECT_EQ(first_runs, 1);
}

}  // namespace
}  // namespace kiln::test
