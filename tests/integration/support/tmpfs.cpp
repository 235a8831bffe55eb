#include "tests/integration/support/tmpfs.hpp"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/integration/support/stack.hpp"

namespace kiln::test {

TmpfsMount::TmpfsMount(const std::string& name, const std::string& size)
    : path_(scratch_dir() / name) {
    std::filesystem::create_directories(path_);
    const std::string options = "size=" + size;
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
        throw std::runtime_error("mount tmpfs on " + path_.string() +
                                 " (needs root): " + std::strerror(errno));
    }
}

TmpfsMount::~TmpfsMount() {
    ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
}

}  // namespace kiln::test
