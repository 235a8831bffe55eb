#include "core/storage/storage.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "core/util/crypto.hpp"

namespace kiln::storage {
namespace fs = std::filesystem;
namespace {

Result<> sync_directory(const fs::path& dir) {
    util::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return fail_errno("open(" + dir.string() + ")", errno);
    if (::fsync(fd.get()) != 0) return fail_errno("fsync(" + dir.string() + ")", errno);
    return {};
}

// Makes a file's contents durable before it is published: a file written by another program
// (a converter's output) has never been synced.
Result<> sync_file_data(const fs::path& file) {
    util::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return fail_errno("open(" + file.string() + ")", errno);
    if (::fdatasync(fd.get()) != 0) return fail_errno("fdatasync(" + file.string() + ")", errno);
    return {};
}

Result<> make_dir(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail_errno("mkdir(" + dir.string() + ")", ec.value());
    return {};
}

}  // namespace

Result<FileDigest> digest_file(const fs::path& path, std::size_t head_bytes) {
    util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return fail_errno("open(" + path.string() + ")", errno);
    FileDigest digest;
    util::Sha256 hash;
    std::string buffer(256 * 1024, '\0');
    while (true) {
        ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno("read(" + path.string() + ")", errno);
        }
        if (n == 0) break;
        std::string_view chunk(buffer.data(), static_cast<std::size_t>(n));
        hash.update(chunk);
        if (digest.head.size() < head_bytes) {
            digest.head.append(chunk.substr(0, head_bytes - digest.head.size()));
        }
        digest.size += static_cast<std::uint64_t>(n);
    }
    digest.sha256 = hash.finish_hex();
    return digest;
}

std::string_view to_string(Area area) {
    switch (area) {
        case Area::sources:
            return "sources";
        case Area::results:
            return "results";
        case Area::logs:
            return "logs";
    }
    return "sources";
}

std::string percent_encode(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
    return out;
}

// ---- FileWriter ------------------------------------------------------------------------------

FileWriter::FileWriter(util::UniqueFd fd, fs::path path)
    : fd_(std::move(fd)), path_(std::move(path)) {}

Result<> FileWriter::write(std::string_view data) {
    hash_.update(data);
    while (!data.empty()) {
        ssize_t n = ::write(fd_.get(), data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno("write(" + path_.string() + ")", errno);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
        size_ += static_cast<std::uint64_t>(n);
    }
    return {};
}

Result<std::string> FileWriter::finish() {
    if (::fdatasync(fd_.get()) != 0) return fail_errno("fdatasync(" + path_.string() + ")", errno);
    if (::close(fd_.release()) != 0) return fail_errno("close(" + path_.string() + ")", errno);
    return hash_.finish_hex();
}

// ---- Staging ---------------------------------------------------------------------------------

Result<DirectoryLock> DirectoryLock::acquire(const fs::path& dir) {
    util::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return fail_errno("open(" + dir.string() + ")", errno);
    if (::flock(fd.get(), LOCK_EX) != 0) return fail_errno("flock(" + dir.string() + ")", errno);
    return DirectoryLock(std::move(fd));
}

bool DirectoryLock::held_elsewhere(const fs::path& dir) {
    util::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return false;
    return ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

Staging::Staging(fs::path dir, fs::path final_dir, DirectoryLock lock)
    : dir_(std::move(dir)), final_dir_(std::move(final_dir)), lock_(std::move(lock)) {}

Staging::~Staging() {
    if (!committed_) {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
}

Result<std::unique_ptr<FileWriter>> Staging::create(const std::string& name) {
    fs::path path = dir_ / name;
    // O_EXCL|O_NOFOLLOW: never write through a link or over another file.
    util::UniqueFd fd(
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
    if (!fd.valid()) return fail_errno("open(" + path.string() + ")", errno);
    return std::make_unique<FileWriter>(std::move(fd), std::move(path));
}

Result<> Staging::adopt(const fs::path& file, const std::string& name) {
    if (auto r = sync_file_data(file); !r) return r;
    const fs::path target = dir_ / name;
    if (::rename(file.c_str(), target.c_str()) != 0) {
        return fail_errno("rename(" + file.string() + ")", errno);
    }
    return {};
}

void Staging::remove(const std::string& name) noexcept {
    std::error_code ec;
    fs::remove(dir_ / name, ec);
}

Result<> Staging::commit() {
    if (committed_) return {};  // a retried recording publishes again: nothing left to do
    // The files' names live in the staging directory: without this sync a crash after the
    // rename can publish a directory whose entries never reached the disk (ext4 without a
    // journal, for one, writes a directory's blocks only when it is synced).
    if (auto r = sync_directory(dir_); !r) return r;
    int rc = ::rename(dir_.c_str(), final_dir_.c_str());
    if (rc != 0 && (errno == ENOTEMPTY || errno == EEXIST)) {
        // The final directory is a dead attempt's leftover: replace it.
        std::error_code ec;
        fs::remove_all(final_dir_, ec);
        if (ec) return fail_errno("remove_all(" + final_dir_.string() + ")", ec.value());
        rc = ::rename(dir_.c_str(), final_dir_.c_str());
    }
    if (rc != 0) return fail_errno("rename(" + dir_.string() + ")", errno);
    committed_ = true;
    return sync_directory(final_dir_.parent_path());
}

void Staging::discard_committed() noexcept {
    if (!committed_) return;
    std::error_code ec;
    fs::remove_all(final_dir_, ec);
    // A retried recording must not take the files as published: its commit() now fails.
    committed_ = false;
}

// ---- Storage ---------------------------------------------------------------------------------

Result<> Storage::ensure_layout() const {
    for (const char* area : {"sources", "results", "logs", "tmp"}) {
        if (auto r = make_dir(root_ / area); !r) return r;
    }
    return {};
}

Result<std::unique_ptr<Staging>> Storage::stage(Area area, std::string_view job) const {
    // A random suffix keeps two stagings of the same job apart (a retried result move).
    fs::path dir = root_ / "tmp" /
                   (std::string(to_string(area)) + "-" + std::string(job) + "-" +
                    util::base64url_encode(util::random_bytes(6)));
    if (::mkdir(dir.c_str(), 0750) != 0) return fail_errno("mkdir(" + dir.string() + ")", errno);
    auto lock = DirectoryLock::acquire(dir);
    if (!lock) {
        ::rmdir(dir.c_str());
        return std::unexpected(lock.error());
    }
    return std::make_unique<Staging>(dir, root_ / to_string(area) / job, std::move(*lock));
}

fs::path Storage::path_of(Area area, std::string_view job, std::string_view name) const {
    return root_ / to_string(area) / job / name;
}

std::string Storage::accel_uri(Area area, std::string_view job, std::string_view name) {
    return "/_kiln_files/" + std::string(to_string(area)) + "/" + percent_encode(job) + "/" +
           percent_encode(name);
}

Result<> Storage::remove_dir(Area area, std::string_view job) const {
    const fs::path dir = root_ / to_string(area) / job;
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) return fail_errno("remove_all(" + dir.string() + ")", ec.value());
    return {};
}

Result<> Storage::remove_job(std::string_view job) const {
    for (Area area : {Area::sources, Area::results, Area::logs}) {
        if (auto r = remove_dir(area, job); !r) return r;
    }
    return {};
}

}  // namespace kiln::storage
