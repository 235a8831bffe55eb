// The disk fills up while a conversion runs: a private kiln-api and kiln-worker whose storage
// root is a 4 MiB tmpfs, and a test.fill job that writes 16 MiB. test.fill is loaded only by
// test-started workers, and this one runs nothing else, so it alone runs the job.
//
// It catches a worker that leaves the partial output or its work directory in storage (the disk
// would stay full for every later job), publishes the truncated file as a result, leaves the job
// running, or fails it without saying that the storage is full; also when the converter exits 0
// despite the full disk, as ffmpeg 5.1 does.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/integration/support/jobs.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/multipart.hpp"
#include "tests/integration/support/processes.hpp"
#include "tests/integration/support/stack.hpp"
#include "tests/integration/support/tmpfs.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class WorkerDiskFull : public ::testing::Test {
  protected:
    void SetUp() override {
        storage_ = std::make_unique<TmpfsMount>("worker-full-storage", "4m");
        const EnvOverrides env = {{"KILN_STORAGE", storage_->path().string()}};
        socket_ = scratch_dir() / "api-worker-full.sock";
        api_ = start_private_api(env, socket_, "api-worker-full.log");
        ASSERT_TRUE(fs::exists(socket_));
    }

    // A worker on the tmpfs for `type` only.
    void start_worker(const std::string& type) {
        const EnvOverrides env = {{"KILN_STORAGE", storage_->path().string()}};
        worker_ = std::make_unique<SpawnedProcess>(
            std::vector<std::string>{worker_binary().string(), "--config",
                                     stack.config_path.string(), "--types", type, "--slots", "1",
                                     "--name", "disk-full"},
            scratch_dir() / "worker-disk-full.log", env);
    }

    void TearDown() override {
        if (worker_) {
            EXPECT_EQ(worker_->stop(SIGTERM), 0) << "kiln-worker stops cleanly";
        }
        if (api_) api_->stop(SIGTERM);
        storage_.reset();
    }

    // Every file and directory left in the storage, relative to its root, except the areas
    // themselves and the job's attempt logs (logs/{job}/ is kept on purpose).
    std::vector<std::string> leftovers(const std::string& job) const {
        const fs::path& root = storage_->path();
        std::vector<std::string> out;
        for (auto it = fs::recursive_directory_iterator(root); it != fs::end(it); ++it) {
            if (it->path() == root / "logs" / job) {
                it.disable_recursion_pending();
            } else if (it->path().parent_path() != root) {
                out.push_back(fs::relative(it->path(), root).string());
            }
        }
        return out;
    }

    // Creates a test.fill job through the private kiln-api; returns its id.
    std::string create_fill_job(std::uint64_t bytes, const std::string& on_error) {
        const nlohmann::json body = {{"type", "test.fill"},
                                     {"params", {{"bytes", bytes}, {"on_error", on_error}}}};
        const std::string reply = fcgi_request(socket_, "POST", "/api/v1/jobs", stack.admin_token,
                                               body.dump(), "application/json");
        EXPECT_EQ(reply.rfind("Status: 201", 0), 0u) << reply;
        return nlohmann::json::parse(reply.substr(reply.find('{'))).value("id", "");
    }

    // The job failed after both attempts saying the disk is full, and left nothing behind.
    void expect_failed_for_lack_of_space(const std::string& id) {
        // The job row is in the shared database, so the stack's API reports it; a job stuck in
        // running fails the next line after 30 s.
        auto w = watch_job(stack.admin(), id, 30s);
        ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
        // test.fill allows 2 attempts: a full disk may be freed, so the failure is retried.
        EXPECT_EQ(w.job["attempts"], 2) << w.job.dump();
        EXPECT_NE(w.job["error"].get<std::string>().find("No space left on device"),
                  std::string::npos)
            << w.job.dump();
        EXPECT_TRUE(w.job["results"].empty()) << w.job.dump();
        EXPECT_FALSE(fs::exists(storage_->path() / "results" / id));
        const auto left = leftovers(id);
        EXPECT_TRUE(left.empty()) << "left in storage: " << nlohmann::json(left).dump();
    }

    const Stack& stack = Stack::get();
    std::unique_ptr<TmpfsMount> storage_;
    fs::path socket_;
    std::unique_ptr<SpawnedProcess> api_;
    std::unique_ptr<SpawnedProcess> worker_;
};

TEST_F(WorkerDiskFull, AJobWhoseOutputFillsTheDiskFailsSayingSoAndLeavesNoFiles) {
    start_worker("test.fill");
    const std::string id = create_fill_job(16 << 20, "fail");
    ASSERT_FALSE(id.empty());
    expect_failed_for_lack_of_space(id);
}

// ffmpeg 5.1 exits 0 after "Error writing trailer ...: No space left on device" and leaves a
// truncated file: the worker must not publish it as a completed job's result.
TEST_F(WorkerDiskFull, AConverterThatExitsZeroOnAFullDiskDoesNotGetItsTruncatedOutputPublished) {
    start_worker("test.fill");
    const std::string id = create_fill_job(16 << 20, "exit0");
    ASSERT_FALSE(id.empty());
    expect_failed_for_lack_of_space(id);
    auto job = stack.admin().get("/api/v1/jobs/" + id).json();
    EXPECT_NE(job["error"].get<std::string>().find("may be truncated"), std::string::npos)
        << job.dump();
}

// The check is on what is left, not on the disk's size: a job that leaves most of the same
// small disk free completes.
TEST_F(WorkerDiskFull, AJobThatFitsOnTheSameSmallDiskCompletes) {
    start_worker("test.fill");
    const std::string id = create_fill_job(64 << 10, "exit0");
    ASSERT_FALSE(id.empty());
    auto w = watch_job(stack.admin(), id, 30s);
    ASSERT_EQ(w.job["status"], "completed") << w.job.dump();
    ASSERT_EQ(w.job["results"].size(), 1u) << w.job.dump();
    EXPECT_EQ(w.job["results"][0]["size"], 64 << 10);
}

// The same with the real ffmpeg (5.1 exits 0 after "Error writing trailer ...: No space left on
// device"): a video upload, then the disk filled to 32 KiB short of full, then the worker.
TEST_F(WorkerDiskFull, AnFfmpegTranscodeOnAFullDiskFailsInsteadOfPublishingATruncatedVideo) {
    const std::string video = read_file(media::video5s());
    const std::string reply = fcgi_request(socket_, "POST", "/api/v1/jobs", stack.admin_token,
                                           multipart::upload("test.transcode", "clip.mp4", video),
                                           multipart::content_type());
    ASSERT_EQ(reply.rfind("Status: 201", 0), 0u) << reply.substr(0, 500);
    const std::string id = nlohmann::json::parse(reply.substr(reply.find('{')))["id"];

    const auto space = fs::space(storage_->path());
    const std::uintmax_t keep_free = 32 << 10;
    ASSERT_GT(space.available, keep_free);
    {
        std::ofstream filler(storage_->path() / "filler", std::ios::binary);
        const std::string block(64 << 10, '\0');
        for (std::uintmax_t left = space.available - keep_free; left > 0;) {
            const auto n = std::min<std::uintmax_t>(left, block.size());
            filler.write(block.data(), static_cast<std::streamsize>(n));
            left -= n;
        }
    }
    start_worker("test.transcode");

    auto w = watch_job(stack.admin(), id, 60s);
    ASSERT_EQ(w.job["status"], "failed") << w.job.dump();
    const std::string error = w.job["error"];
    EXPECT_NE(error.find("may be truncated"), std::string::npos) << error;
    EXPECT_TRUE(w.job["results"].empty()) << w.job.dump();
    EXPECT_FALSE(fs::exists(storage_->path() / "results" / id));
    EXPECT_FALSE(fs::exists(storage_->path() / "tmp" / ("work-" + id + "-1")));
}

}  // namespace
}  // namespace kiln::test
