// What a publication syncs, and in which order. A power cut cannot be simulated here, so the test
// program interposes fsync(2) and fdatasync(2) (then makes the real system calls) and records the
// path of each synced descriptor at the time of the call: a staging path proves the sync came
// before the rename that published it.

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "core/storage/storage.hpp"

namespace {

std::mutex sync_log_mutex;
std::vector<std::string> sync_log;

void record_sync(int fd) {
    char target[4096];
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    std::lock_guard lock(sync_log_mutex);
    sync_log.emplace_back(n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?");
}

}  // namespace

// The program's own definitions win over libc's for every caller in it, kiln_core included.
extern "C" int fsync(int fd) {
    record_sync(fd);
    return static_cast<int>(::syscall(SYS_fsync, fd));
}

extern "C" int fdatasync(int fd) {
    record_sync(fd);
    return static_cast<int>(::syscall(SYS_fdatasync, fd));
}

namespace kiln::storage {
namespace {
namespace fs = std::filesystem;

class StorageDurability : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string pattern = (fs::temp_directory_path() / "kiln-durability-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        root_ = fs::canonical(pattern);
        storage_ = Storage(root_);
        ASSERT_TRUE(storage_.ensure_layout());
        std::lock_guard lock(sync_log_mutex);
        sync_log.clear();
    }
    void TearDown() override { fs::remove_all(root_); }

    static std::vector<std::string> synced() {
        std::lock_guard lock(sync_log_mutex);
        return sync_log;
    }

    // The one staging directory of `area` for `job` (its name carries a random suffix).
    fs::path staging_dir(std::string_view area, std::string_view job) const {
        const std::string prefix = std::string(area) + "-" + std::string(job) + "-";
        for (const auto& entry : fs::directory_iterator(root_ / "tmp")) {
            if (entry.path().filename().string().starts_with(prefix)) return entry.path();
        }
        return {};
    }

    fs::path root_;
    Storage storage_{""};
};

TEST_F(StorageDurability, UploadIsSyncedFileThenStagingDirectoryThenParent) {
    auto staging = storage_.stage(Area::sources, "job1");
    ASSERT_TRUE(staging);
    const fs::path staged = staging_dir("sources", "job1");
    ASSERT_FALSE(staged.empty());
    auto writer = (*staging)->create("a.bin");
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->write("contents"));
    ASSERT_TRUE((*writer)->finish());
    ASSERT_TRUE((*staging)->commit());

    const std::vector<std::string> expected = {(staged / "a.bin").string(), staged.string(),
                                               (root_ / "sources").string()};
    EXPECT_EQ(synced(), expected);
    EXPECT_TRUE(fs::exists(root_ / "sources" / "job1" / "a.bin"));
}

TEST_F(StorageDurability, AdoptedOutputIsSyncedBeforeItIsMoved) {
    // A converter's output: written by another program, never synced.
    const fs::path output = root_ / "out.webm";
    std::ofstream(output, std::ios::binary) << "video";
    auto staging = storage_.stage(Area::results, "job2");
    ASSERT_TRUE(staging);
    const fs::path staged = staging_dir("results", "job2");
    ASSERT_TRUE((*staging)->adopt(output, "out.webm"));
    ASSERT_TRUE((*staging)->commit());

    const std::vector<std::string> expected = {output.string(), staged.string(),
                                               (root_ / "results").string()};
    EXPECT_EQ(synced(), expected);
    EXPECT_TRUE(fs::exists(root_ / "results" / "job2" / "out.webm"));
}

}  // namespace
}  // namespace kiln::storage
