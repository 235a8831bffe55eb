#pragma once
// A small tmpfs as a private storage root, for tests of a full disk. Mounting needs root (the
// tests run as root).

#include <filesystem>
#include <string>

namespace kiln::test {

class TmpfsMount final {
  public:
    // Mounts a tmpfs of `size` (mount(8) syntax: "1m", "4m") on scratch_dir()/name; throws when
    // the mount fails.
    TmpfsMount(const std::string& name, const std::string& size);
    // Detaches the mount even if a process still has a file open in it, and removes the
    // directory.
    ~TmpfsMount();
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

}  // namespace kiln::test
