#include "core/magic/detector.hpp"

#include <fcntl.h>
#include <magic.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <vector>

#include "core/util/fd.hpp"

namespace kiln::magic {
namespace {

// No decompression (and so no forked decompressors in a threaded daemon), no archive or
// document container parsing: only the bytes' own signature decides.
constexpr int detector_flags = MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_TAR |
                               MAGIC_NO_CHECK_CDF | MAGIC_NO_CHECK_ELF | MAGIC_NO_COMPRESS_FORK |
                               MAGIC_ERROR;

// The compiled files libmagic would load by default: each entry of its search path, with
// ".mgc" added unless it already ends so.
std::vector<std::filesystem::path> default_database_files() {
    std::vector<std::filesystem::path> files;
    std::string_view path = magic_getpath(nullptr, 0);
    while (!path.empty()) {
        const auto colon = path.find(':');
        std::string entry(path.substr(0, colon));
        path = colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
        if (entry.empty()) continue;
        if (!entry.ends_with(".mgc")) entry += ".mgc";
        files.emplace_back(std::move(entry));
    }
    return files;
}

}  // namespace

Result<std::shared_ptr<const Database>> Database::load() {
    std::string tried;
    for (const auto& file : default_database_files()) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(file, ec)) return load(file);
        tried += (tried.empty() ? "" : ", ") + file.string();
    }
    return fail(ErrorCode::config, "no compiled magic database (tried " + tried + ")");
}

Result<std::shared_ptr<const Database>> Database::load(const std::filesystem::path& file) {
    util::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return fail_errno("open(" + file.string() + ")", errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno("fstat(" + file.string() + ")", errno);
    if (st.st_size <= 0) return fail(ErrorCode::config, file.string() + ": empty magic database");
    const auto size = static_cast<std::size_t>(st.st_size);
    // Private and writable: libmagic may byte-swap a database of the other endianness in place,
    // which then stays in this process's copy.
    void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
    if (data == MAP_FAILED) return fail_errno("mmap(" + file.string() + ")", errno);
    return std::shared_ptr<const Database>(new Database(data, size, file));
}

Database::~Database() { ::munmap(data_, size_); }

Result<std::unique_ptr<Detector>> Detector::open(std::shared_ptr<const Database> database) {
    magic_t cookie = magic_open(detector_flags);
    if (cookie == nullptr) return fail(ErrorCode::config, "magic_open failed");
    std::unique_ptr<Detector> detector(new Detector(cookie, database));
    void* buffers[] = {database->data()};
    std::size_t sizes[] = {database->size()};
    if (magic_load_buffers(cookie, buffers, sizes, 1) != 0) {
        return fail(ErrorCode::config, database->file().string() + ": " + magic_error(cookie));
    }
    std::size_t bytes_max = head_bytes;
    magic_setparam(cookie, MAGIC_PARAM_BYTES_MAX, &bytes_max);
    return detector;
}

Detector::~Detector() {
    if (cookie_ != nullptr) magic_close(cookie_);
}

std::string Detector::mime_type(std::string_view head) {
    const char* type = magic_buffer(cookie_, head.data(), head.size());
    if (type == nullptr) return "application/octet-stream";
    return type;
}

}  // namespace kiln::magic
