// Retries with back-off, dead letters and retry, cancellation, idempotent creation, leases of
// killed workers, logs, purge.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "core/db/mariadb.hpp"
#include "core/util/crypto.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/jobs.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

using namespace std::chrono_literals;

class Reliability : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();

    std::string create_json(const std::string& body, const Client* as = nullptr) {
        auto r = (as ? *as : client).post_json("/api/v1/jobs", body);
        EXPECT_EQ(r.status, 201) << r.body;
        return r.json().value("id", "");
    }

    nlohmann::json wait_for_status(const std::string& id, const std::string& status,
                                   std::chrono::milliseconds timeout = 10s) {
        nlohmann::json job;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            job = client.get("/api/v1/jobs/" + id).json();
            if (job["status"] == status) break;
            std::this_thread::sleep_for(25ms);
        }
        return job;
    }

    std::unique_ptr<SpawnedProcess> start_worker(const std::string& name, int lease_seconds) {
        return std::make_unique<SpawnedProcess>(
            std::vector<std::string>{worker_binary().string(), "--config",
                                     stack.config_path.string(), "--types", "test.controlled",
                                     "--slots", "2", "--name", name, "--lease-seconds",
                                     std::to_string(lease_seconds)},
            scratch_dir() / (name + ".log"));
    }
};

TEST_F(Reliability, CancellingAPendingJobCancelsItAtOnceAndAFinishedOneIs409) {
    // No stack worker runs test.controlled, so it stays pending.
    const auto id = create_json(R"({"type":"test.controlled"})");
    auto r = client.post_json("/api/v1/jobs/" + id + "/cancel", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["status"], "cancelled");
    EXPECT_FALSE(r.json()["finished_at"].is_null());
    auto again = client.post_json("/api/v1/jobs/" + id + "/cancel", "");
    EXPECT_EQ(again.status, 409);
    EXPECT_EQ(again.code(), "conflict");
}

TEST_F(Reliability, CancellingARunningJobKillsItWithinTwoSeconds) {
    const auto id = create_json(R"({"type":"test.sleep","params":{"ms":30000}})");
    ASSERT_EQ(wait_for_status(id, "running")["status"], "running");
    const auto asked = std::chrono::steady_clock::now();
    auto r = client.post_json("/api/v1/jobs/" + id + "/cancel", "");
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_TRUE(r.json()["cancel_requested"].get<bool>());
    auto job = wait_for_status(id, "cancelled", 5s);
    const auto took = std::chrono::steady_clock::now() - asked;
    EXPECT_EQ(job["status"], "cancelled") << job.dump();
    EXPECT_LT(took, 2s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
    EXPECT_TRUE(job["results"].empty());
    // Stopped as a cancel, not handed back (which would uncount the attempt).
    EXPECT_EQ(job["attempts"], 1) << job.dump();
    EXPECT_FALSE(job["finished_at"].is_null()) << job.dump();
}

// A cancel acknowledged while the attempt runs wins over that attempt's failure: the job ends
// cancelled after it, not back in the queue to run (and maybe fail) again. The worker looks for
// cancels every half second, so an attempt that fails 250 ms in usually fails before it sees
// one; five jobs make the race show with the old code.
TEST_F(Reliability, ACancelledJobWhoseAttemptFailsIsCancelledNotRetried) {
    for (int i = 0; i < 5; ++i) {
        SCOPED_TRACE(i);
        const auto id =
            create_json(R"({"type":"test.noop","params":{"sleep_ms":250,"fail":true}})");
        std::this_thread::sleep_for(100ms);  // it is running by now (picked up within ms)
        auto r = client.post_json("/api/v1/jobs/" + id + "/cancel", "");
        ASSERT_TRUE(r.status == 202 || r.status == 200) << r.body;
        nlohmann::json job;
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (std::chrono::steady_clock::now() < deadline) {
            job = client.get("/api/v1/jobs/" + id).json();
            if (job["status"] != "running" && job["status"] != "pending") break;
            std::this_thread::sleep_for(25ms);
        }
        EXPECT_EQ(job["status"], "cancelled") << job.dump();
        EXPECT_LE(job["attempts"].get<int>(), 1) << "it ran again after the cancel: " << job.dump();
    }
}

TEST_F(Reliability, AFailingJobIsRetriedWithBackoffThenFailsForGood) {
    // test.noop allows 3 attempts; fail=true fails each one. The back-off after attempt n is
    // 2 s x 2^(n-1), with +-20 % jitter: the wait shows as next_attempt_at - updated_at (both
    // set by the same UPDATE) while the job is pending between attempts.
    const auto id = create_json(R"({"type":"test.noop","params":{"fail":true}})");
    std::map<int, std::int64_t> backoff_ms;  // by the attempt that failed
    nlohmann::json job;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
        job = client.get("/api/v1/jobs/" + id).json();
        if (job["status"] == "pending" && job["attempts"].get<int>() >= 1) {
            EXPECT_NE(job["error"].get<std::string>().find("asked to fail"), std::string::npos)
                << job.dump();
            backoff_ms[job["attempts"].get<int>()] =
                rfc3339_ms(job["next_attempt_at"]) - rfc3339_ms(job["updated_at"]);
        }
        if (job["status"] == "failed") break;
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(job["status"], "failed") << job.dump();
    EXPECT_EQ(job["attempts"], 3);
    EXPECT_EQ(job["max_attempts"], 3);
    EXPECT_TRUE(job["next_attempt_at"].is_null()) << job.dump();
    EXPECT_NE(job["error"].get<std::string>().find("asked to fail"), std::string::npos);
    ASSERT_EQ(backoff_ms.size(), 2u) << "never saw the job waiting between attempts";
    EXPECT_GE(backoff_ms[1], 1600);
    EXPECT_LE(backoff_ms[1], 2400);
    EXPECT_GE(backoff_ms[2], 3200);
    EXPECT_LE(backoff_ms[2], 4800);
}

// A completion whose COMMIT never happened (its worker lost the lease during a database outage)
// can leave results/{job}/ published without rows; the next attempt removes it, so a job that
// then fails keeps no result files that nothing lists.
TEST_F(Reliability, ResultFilesLeftByAnAttemptThatNeverCompletedAreRemovedWhenTheJobRunsAgain) {
    const auto id = create_json(R"({"type":"test.noop","params":{"fail":true}})");
    const auto leftover = stack.config.storage_root / "results" / id / "thumb.png";
    bool placed = false;
    nlohmann::json job;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!placed && std::chrono::steady_clock::now() < deadline) {
        job = client.get("/api/v1/jobs/" + id).json();
        if (job["status"] != "pending" || job["attempts"] == 0) {
            if (job["status"] == "failed") break;
            std::this_thread::sleep_for(5ms);
            continue;
        }
        const auto attempts = job["attempts"];
        std::filesystem::create_directories(leftover.parent_path());
        std::ofstream(leftover) << "published by an attempt whose completion was lost";
        // Still waiting for its next attempt after the file exists: that attempt must see it.
        // (Else the next one was claimed in between: try again before the one after.)
        job = client.get("/api/v1/jobs/" + id).json();
        placed = job["status"] == "pending" && job["attempts"] == attempts;
        if (!placed) std::filesystem::remove_all(leftover.parent_path());
    }
    ASSERT_TRUE(placed) << "never saw the job waiting between attempts: " << job.dump();
    job = wait_for_status(id, "failed", 30s);
    EXPECT_EQ(job["status"], "failed") << job.dump();
    EXPECT_TRUE(job["results"].empty()) << job.dump();
    EXPECT_FALSE(std::filesystem::exists(leftover.parent_path()))
        << leftover << " outlived the attempts that followed it";
}

TEST_F(Reliability, RetryPutsAFailedJobBackWithFreshAttemptsAndOtherStatesAre409) {
    const auto id = create_json(R"({"type":"test.fail"})");
    ASSERT_EQ(wait_for_status(id, "failed")["status"], "failed");
    auto r = client.post_json("/api/v1/jobs/" + id + "/retry", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.json()["status"], "failed");
    auto job = wait_for_status(id, "failed");
    EXPECT_EQ(job["attempts"], 1) << job.dump();
    // The first run's log is kept beside the second's.
    EXPECT_EQ(client.get("/api/v1/jobs/" + id + "/logs").json()["logs"].size(), 2u);

    const auto pending = create_json(R"({"type":"test.controlled"})");
    auto conflict = client.post_json("/api/v1/jobs/" + pending + "/retry", "");
    EXPECT_EQ(conflict.status, 409);
    EXPECT_EQ(conflict.code(), "conflict");
}

TEST_F(Reliability, KilnctlRetriesTheFailedJobsOfATypeWithFreshAttempts) {
    const auto id = create_json(R"({"type":"test.fail"})");
    ASSERT_EQ(wait_for_status(id, "failed")["status"], "failed");
    run_command({stack.kilnctl.string(), "--config", stack.config_path.string(), "retry", "--type",
                 "test.fail", "--failed-since", "1h"});
    // It ran again from a fresh count: one attempt, a second log, and it failed again.
    auto job = wait_for_status(id, "failed");
    EXPECT_EQ(job["attempts"], 1) << job.dump();
    EXPECT_EQ(client.get("/api/v1/jobs/" + id + "/logs").json()["logs"].size(), 2u);
}

TEST_F(Reliability, EachAttemptKeepsALogThatTheOwnerCanRead) {
    const auto id = create_json(R"({"type":"test.fail"})");
    ASSERT_EQ(wait_for_status(id, "failed")["status"], "failed");
    auto list = client.get("/api/v1/jobs/" + id + "/logs");
    ASSERT_EQ(list.status, 200) << list.body;
    ASSERT_EQ(list.json()["logs"].size(), 1u);
    EXPECT_EQ(list.json()["logs"][0]["name"], "attempt-001.log");
    auto log = client.get("/api/v1/jobs/" + id + "/logs/attempt-001.log");
    EXPECT_EQ(log.status, 200);
    EXPECT_NE(log.body.find("failing on purpose"), std::string::npos) << log.body;
    EXPECT_EQ(client.get("/api/v1/jobs/" + id + "/logs/../../kiln.toml").status, 404);
}

TEST_F(Reliability, AnEmptyIdempotencyKeyIs400NotTakenForNone) {
    const auto rows = stack.job_rows();
    // "Name;" is how libcurl sends a header with an empty value.
    auto r = client.send("POST", "/api/v1/jobs", R"({"type":"test.controlled"})",
                         {"Content-Type: application/json", "Idempotency-Key;"});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.code(), "invalid_request");
    EXPECT_EQ(stack.job_rows(), rows);
}

TEST_F(Reliability, TheSameIdempotencyKeyGivesTheOriginalJobAndADifferentRequestIs422) {
    const std::string key = "key-" + util::new_job_id();
    const std::vector<std::string> header = {"Content-Type: application/json",
                                             "Idempotency-Key: " + key};
    const auto rows = stack.job_rows();
    auto first = client.send("POST", "/api/v1/jobs", R"({"type":"test.controlled"})", header);
    ASSERT_EQ(first.status, 201) << first.body;
    auto second = client.send("POST", "/api/v1/jobs", R"({"type":"test.controlled"})", header);
    EXPECT_EQ(second.status, 200) << second.body;
    EXPECT_EQ(second.json()["id"], first.json()["id"]);
    EXPECT_EQ(stack.job_rows(), rows + 1);

    auto different = client.send("POST", "/api/v1/jobs",
                                 R"({"type":"test.controlled","priority":"batch"})", header);
    EXPECT_EQ(different.status, 422);
    EXPECT_EQ(different.code(), "idempotency_mismatch");

    // Keys belong to their owner.
    Client other = client.with_token(stack.create_token("idem-other"));
    auto theirs = other.send("POST", "/api/v1/jobs", R"({"type":"test.controlled"})", header);
    EXPECT_EQ(theirs.status, 201);
    EXPECT_NE(theirs.json()["id"], first.json()["id"]);

    // An upload with a key is stored once.
    const std::string upload_key = "upload-" + util::new_job_id();
    const auto sources = stack.files_in("sources").size();
    for (int i = 0; i < 2; ++i) {
        auto r = client.send(
            "POST", "/api/v1/jobs",
            "--B\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n"
            "test.noop\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; "
            "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B--\r\n",
            {"Content-Type: multipart/form-data; boundary=B", "Idempotency-Key: " + upload_key});
        EXPECT_EQ(r.status, i == 0 ? 201 : 200) << r.body;
    }
    EXPECT_EQ(stack.files_in("sources").size(), sources + 1);
    EXPECT_TRUE(stack.staged_upload_files().empty());
}

TEST_F(Reliability, CancelRetryAndLogsOfAnotherOwnersJobLookMissing) {
    Client alice = client.with_token(stack.create_token("alice2"));
    Client bob = client.with_token(stack.create_token("bob2"));
    const auto id = create_json(R"({"type":"test.controlled"})", &alice);
    const std::string guessed = util::new_job_id();
    for (const char* action : {"cancel", "retry"}) {
        auto theirs = bob.post_json("/api/v1/jobs/" + id + "/" + action, "");
        auto missing = bob.post_json("/api/v1/jobs/" + guessed + "/" + action, "");
        EXPECT_EQ(theirs.status, 404) << action;
        EXPECT_EQ(theirs.body, missing.body);
    }
    EXPECT_EQ(bob.get("/api/v1/jobs/" + id + "/logs").status, 404);
    EXPECT_EQ(alice.get("/api/v1/jobs/" + id).json()["status"], "pending");
}

TEST_F(Reliability, AJobOfAWorkerKilledWithSigkillCompletesOnAnotherWorker) {
    auto doomed = start_worker("doomed", 2);
    const auto id = create_json(R"({"type":"test.controlled","params":{"sleep_ms":60000}})");
    ASSERT_EQ(wait_for_status(id, "running")["status"], "running");
    doomed->stop(SIGKILL);

    const auto started = std::chrono::steady_clock::now();
    auto rescuer = start_worker("rescuer", 2);
    // The lease (2 s) expires, the rescuer's reaper returns the job, the rescuer runs it anew:
    // running again, as its second attempt.
    nlohmann::json job;
    while (std::chrono::steady_clock::now() - started < 15s) {
        job = client.get("/api/v1/jobs/" + id).json();
        if (job["status"] == "running" && job["attempts"] == 2) break;
        std::this_thread::sleep_for(25ms);
    }
    ASSERT_EQ(job["attempts"], 2) << job.dump();
    ASSERT_EQ(job["status"], "running") << job.dump();
    client.post_json("/api/v1/jobs/" + id + "/cancel", "");  // no need to sleep 60 s again
    job = wait_for_status(id, "cancelled", 5s);
    EXPECT_EQ(job["status"], "cancelled") << job.dump();
    EXPECT_EQ(job["attempts"], 2) << "the killed attempt counts";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
}

// A worker killed during a job's last attempt: when its lease expires the reaper fails the job
// with the reason, instead of queueing an attempt past max_attempts.
TEST_F(Reliability, AJobWhoseLastAttemptLosesItsLeaseFailsWithTheReason) {
    const auto id = create_json(R"({"type":"test.controlled","params":{"sleep_ms":60000}})");
    {
        // Two attempts already spent (no worker runs test.controlled yet, so it is pending).
        auto conn = db::Connection::open(stack.config.database);
        ASSERT_TRUE(conn) << conn.error().describe();
        auto spent = (*conn)->execute(
            "UPDATE jobs SET attempts = max_attempts - 1 WHERE id = ? AND status = 'pending'",
            {id});
        ASSERT_TRUE(spent && *spent == 1) << "the job was not pending";
    }
    auto doomed = start_worker("doomed-last", 2);
    auto job = wait_for_status(id, "running");
    ASSERT_EQ(job["status"], "running") << job.dump();
    ASSERT_EQ(job["attempts"], job["max_attempts"]) << job.dump();
    doomed->stop(SIGKILL);
    // Any worker's reaper may act; this one is sure to run for test.controlled.
    auto reaper = start_worker("reaper-last", 2);
    job = wait_for_status(id, "failed", 15s);
    EXPECT_EQ(job["status"], "failed") << job.dump();
    EXPECT_EQ(job["attempts"], job["max_attempts"]) << job.dump();
    EXPECT_NE(job["error"].get<std::string>().find("lease expired"), std::string::npos)
        << job.dump();
    EXPECT_FALSE(job["finished_at"].is_null()) << job.dump();
    EXPECT_TRUE(job["next_attempt_at"].is_null()) << job.dump();
}

// A process as /proc/PID/stat shows it.
struct ProcessState {
    bool exists = false;
    char state = '?';  // 'Z': a zombie, dead but not yet reaped
    int ppid = 0;
};

ProcessState process_state(int pid) {
    ProcessState out;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) return out;
    const auto after_name = stat.rfind(')');  // the name may hold spaces and parentheses
    if (after_name == std::string::npos) return out;
    std::istringstream rest(stat.substr(after_name + 1));
    out.exists = static_cast<bool>(rest >> out.state >> out.ppid);
    return out;
}

// A worker killed with SIGKILL cannot stop its converters; they die with it instead of running on
// beside the job's next attempt.
TEST_F(Reliability, AConverterDiesWithItsWorkerKilledWithSigkill) {
    SpawnedProcess worker(
        {worker_binary().string(), "--config", stack.config_path.string(), "--types", "test.hold",
         "--slots", "1", "--name", "holder", "--lease-seconds", "2"},
        scratch_dir() / "holder.log");
    const auto id = create_json(R"({"type":"test.hold","params":{"seconds":77}})");
    ASSERT_EQ(wait_for_status(id, "running")["status"], "running");
    int converter = -1;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (converter < 0 && std::chrono::steady_clock::now() < deadline) {
        for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
            const std::string name = entry.path().filename();
            if (name.find_first_not_of("0123456789") != std::string::npos) continue;
            if (process_state(std::stoi(name)).ppid == worker.pid() &&
                read_file(entry.path() / "cmdline") == std::string("sleep\0"
                                                                   "77\0",
                                                                   9)) {
                converter = std::stoi(name);
            }
        }
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_GT(converter, 0) << "no sleep 77 under the worker";
    worker.stop(SIGKILL);
    auto alive = [&] {
        const auto p = process_state(converter);
        return p.exists && p.state != 'Z';
    };
    for (int i = 0; i < 100 && alive(); ++i) std::this_thread::sleep_for(20ms);
    EXPECT_FALSE(alive()) << "the converter outlived its worker";
    client.post_json("/api/v1/jobs/" + id + "/cancel", "");  // its lease ends it cancelled
}

TEST_F(Reliability, PurgeDeletesOldJobsWithTheirFilesKeepsTheNewestFailedAndSweepsOrphans) {
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
        auto r = client.post_multipart("/api/v1/jobs",
                                       {{"type", "test.controlled"}, {"file", "", media::png()}});
        ASSERT_EQ(r.status, 201) << r.body;
        ids.push_back(r.json()["id"]);
        client.post_json("/api/v1/jobs/" + ids.back() + "/cancel", "");
        std::this_thread::sleep_for(5ms);
    }
    // An orphan: a sources directory without a row, two hours old.
    auto orphan = stack.config.storage_root / "sources" / util::new_job_id();
    std::filesystem::create_directories(orphan);
    std::ofstream(orphan / "x.bin") << "x";
    std::filesystem::last_write_time(orphan, std::filesystem::file_time_type::clock::now() - 2h);

    run_command({stack.kilnctl.string(), "--config", stack.config_path.string(), "purge",
                 "--failed-older-than", "0s", "--keep-failed", "2"});
    EXPECT_EQ(client.get("/api/v1/jobs/" + ids[0]).status, 404);
    EXPECT_FALSE(std::filesystem::exists(stack.config.storage_root / "sources" / ids[0]));
    for (int i = 1; i < 3; ++i) {
        EXPECT_EQ(client.get("/api/v1/jobs/" + ids[i]).status, 200) << i;
        EXPECT_TRUE(std::filesystem::exists(stack.config.storage_root / "sources" / ids[i]));
    }
    EXPECT_FALSE(std::filesystem::exists(orphan));
}

}  // namespace
}  // namespace kiln::test
