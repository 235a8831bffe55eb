#pragma once
// Content type detection with libmagic from bytes already in memory (the head of an upload), so
// the declared Content-Type and the file name's extension are never trusted. A Detector is not
// thread-safe: one per thread.

#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

struct magic_set;

namespace kiln::magic {

// How many leading bytes of a file the detector looks at.
inline constexpr std::size_t head_bytes = 64 * 1024;

class Detector final {
  public:
    // Loads the default magic database. Fails with config when it cannot be loaded.
    static Result<std::unique_ptr<Detector>> open();
    ~Detector();
    Detector(const Detector&) = delete;
    Detector& operator=(const Detector&) = delete;

    // The MIME type ("image/png"), "application/octet-stream" when unknown.
    [[nodiscard]] std::string mime_type(std::string_view head);

  private:
    explicit Detector(magic_set* cookie) : cookie_(cookie) {}
    magic_set* cookie_;
};

}  // namespace kiln::magic
