#include "core/magic/detector.hpp"

#include <magic.h>

namespace kiln::magic {

Result<std::unique_ptr<Detector>> Detector::open() {
    // No decompression (and so no forked decompressors in a threaded daemon), no archive or
    // document container parsing: only the bytes' own signature decides.
    const int flags = MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_TAR |
                      MAGIC_NO_CHECK_CDF | MAGIC_NO_CHECK_ELF | MAGIC_NO_COMPRESS_FORK |
                      MAGIC_ERROR;
    magic_t cookie = magic_open(flags);
    if (cookie == nullptr) return fail(ErrorCode::config, "magic_open failed");
    std::unique_ptr<Detector> detector(new Detector(cookie));
    if (magic_load(cookie, nullptr) != 0) {
        return fail(ErrorCode::config, std::string("magic_load: ") + magic_error(cookie));
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
