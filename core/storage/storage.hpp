#pragma once
// File storage under one root:
//   sources/{job}/NAME   uploaded files       results/{job}/NAME   converter outputs
//   logs/{job}/NAME      converter logs       tmp/                 staging, swept when stale
// Files become visible only by rename(2) of a complete, synced file or directory, so no reader
// ever sees a partial file. This is the only module that knows paths; an object-store backend
// would replace it behind the same operations (stage + commit, stat, list, remove).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/util/crypto.hpp"
#include "core/util/fd.hpp"

namespace kiln::storage {

enum class Area { sources, results, logs };
std::string_view to_string(Area area);

// One file being written: hashed and counted as it goes.
class FileWriter final {
  public:
    FileWriter(util::UniqueFd fd, std::filesystem::path path);
    // Fails with insufficient_storage when the disk is full, io otherwise.
    [[nodiscard]] Result<> write(std::string_view data);
    // Flushes to disk (fdatasync) and closes; returns the SHA-256 hex digest.
    [[nodiscard]] Result<std::string> finish();
    [[nodiscard]] std::uint64_t size() const { return size_; }
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  private:
    util::UniqueFd fd_;
    std::filesystem::path path_;
    util::Sha256 hash_;
    std::uint64_t size_ = 0;
};

// An exclusive flock(2) on a directory for as long as the object lives: marks a staging or work
// directory as in use, so the purge's sweep never removes it, however old its mtime.
class DirectoryLock final {
  public:
    // Fails with io when the directory cannot be opened.
    static Result<DirectoryLock> acquire(const std::filesystem::path& dir);
    // True when another process (or object) holds the lock.
    static bool held_elsewhere(const std::filesystem::path& dir);

  private:
    explicit DirectoryLock(util::UniqueFd fd) : fd_(std::move(fd)) {}
    util::UniqueFd fd_;
};

// A job's files being staged in tmp/. Removed on destruction unless committed. Locked (see
// DirectoryLock) until destroyed, also after the commit renamed it into place: the window
// between publishing the files and committing the row is never swept.
class Staging final {
  public:
    Staging(std::filesystem::path dir, std::filesystem::path final_dir, DirectoryLock lock);
    ~Staging();
    Staging(const Staging&) = delete;
    Staging& operator=(const Staging&) = delete;

    // `name` must already be sanitised (a single safe path component).
    [[nodiscard]] Result<std::unique_ptr<FileWriter>> create(const std::string& name);
    // Moves an existing file (same file system) into the staging area as `name`, after syncing
    // its contents (fdatasync).
    [[nodiscard]] Result<> adopt(const std::filesystem::path& file, const std::string& name);
    // Removes one staged file (e.g. rejected by type checking).
    void remove(const std::string& name) noexcept;
    // Syncs the staging directory, renames it to its final place and syncs the parent. An
    // existing final directory (left by an attempt that died before recording) is replaced.
    [[nodiscard]] Result<> commit();
    // Undoes a commit (the row could not be recorded): removes the final directory.
    void discard_committed() noexcept;

  private:
    std::filesystem::path dir_;
    std::filesystem::path final_dir_;
    DirectoryLock lock_;
    bool committed_ = false;
};

struct StoredFileInfo {
    std::string name;
    std::uint64_t size = 0;
};

class Storage final {
  public:
    explicit Storage(std::filesystem::path root) : root_(std::move(root)) {}

    // Creates the area directories (idempotent).
    [[nodiscard]] Result<> ensure_layout() const;

    // A staging area whose commit publishes into area/{job}/.
    [[nodiscard]] Result<std::unique_ptr<Staging>> stage(Area area, std::string_view job) const;

    [[nodiscard]] std::filesystem::path path_of(Area area, std::string_view job,
                                                std::string_view name) const;
    // The internal URI nginx serves the file from (X-Accel-Redirect), percent-encoded.
    [[nodiscard]] static std::string accel_uri(Area area, std::string_view job,
                                               std::string_view name);

    // Removes area/{job}/ for every area (idempotent).
    [[nodiscard]] Result<> remove_job(std::string_view job) const;
    // area/{job}/ and what it holds, if it exists.
    [[nodiscard]] Result<> remove_dir(Area area, std::string_view job) const;

    [[nodiscard]] const std::filesystem::path& root() const { return root_; }

  private:
    std::filesystem::path root_;
};

struct FileDigest {
    std::uint64_t size = 0;
    std::string sha256;
    std::string head;  // the first bytes, for type detection
};
// Reads the file once: size, SHA-256 and its first `head_bytes` bytes.
Result<FileDigest> digest_file(const std::filesystem::path& path, std::size_t head_bytes);

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string percent_encode(std::string_view text);

}  // namespace kiln::storage
