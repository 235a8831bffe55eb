#pragma once
// Content type detection with libmagic from bytes already in memory (the head of an upload), so
// the declared Content-Type and the file name's extension are never trusted. A Detector is not
// thread-safe: one per thread, all of them reading one shared Database.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

struct magic_set;

namespace kiln::magic {

// How many leading bytes of a file the detector looks at.
inline constexpr std::size_t head_bytes = 64 * 1024;

// The compiled magic database (magic.mgc), mapped once for the whole process. A cookie that
// loads the database itself maps its own copy, and RSS counts the touched pages of every copy:
// with 16 request threads that was 31 MiB of kiln-api's resident size after varied uploads.
class Database final {
  public:
    // libmagic's default database: the first readable compiled file on magic_getpath()
    // (MAGIC or /usr/share/misc/magic.mgc). Fails with config when there is none.
    static Result<std::shared_ptr<const Database>> load();
    // A given compiled database file.
    static Result<std::shared_ptr<const Database>> load(const std::filesystem::path& file);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    [[nodiscard]] void* data() const { return data_; }
    [[nodiscard]] std::size_t size() const { return size_; }
    [[nodiscard]] const std::filesystem::path& file() const { return file_; }

  private:
    Database(void* data, std::size_t size, std::filesystem::path file)
        : data_(data), size_(size), file_(std::move(file)) {}
    void* data_;
    std::size_t size_;
    std::filesystem::path file_;
};

class Detector final {
  public:
    // A detector reading `database`, which it keeps alive. Fails with config when libmagic
    // rejects the database.
    static Result<std::unique_ptr<Detector>> open(std::shared_ptr<const Database> database);
    ~Detector();
    Detector(const Detector&) = delete;
    Detector& operator=(const Detector&) = delete;

    // The MIME type ("image/png"), "application/octet-stream" when unknown.
    [[nodiscard]] std::string mime_type(std::string_view head);

  private:
    Detector(magic_set* cookie, std::shared_ptr<const Database> database)
        : cookie_(cookie), database_(std::move(database)) {}
    magic_set* cookie_;
    std::shared_ptr<const Database> database_;
};

}  // namespace kiln::magic
