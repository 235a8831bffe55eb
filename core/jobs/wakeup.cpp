#include "core/jobs/wakeup.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::jobs {
namespace fs = std::filesystem;
namespace {

bool make_address(const std::string& path, sockaddr_un& addr) {
    if (path.size() >= sizeof addr.sun_path) return false;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

}  // namespace

Result<WakeupListener> WakeupListener::open(const fs::path& dir, const std::string& name) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail_errno("mkdir(" + dir.string() + ")", ec.value());
    fs::path path = dir / (name + ".sock");
    sockaddr_un addr{};
    if (!make_address(path.string(), addr)) {
        return fail(ErrorCode::config, "wake-up socket path too long: " + path.string());
    }
    util::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return fail_errno("socket(AF_UNIX)", errno);
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return fail_errno("bind(" + path.string() + ")", errno);
    }
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return WakeupListener(std::move(fd), std::move(path), st.st_ino);
}

WakeupListener::~WakeupListener() {
    if (!fd_.valid() || path_.empty()) return;
    // A worker started later under the same name has replaced the file: keep theirs.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

int WakeupListener::drain() {
    int count = 0;
    char byte[16];
    while (::recv(fd_.get(), byte, sizeof byte, 0) >= 0) ++count;
    return count;
}

WakeupSender::WakeupSender(fs::path dir)
    : dir_(std::move(dir)), fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) {}

void WakeupSender::notify() {
    if (!fd_.valid()) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - listed_at_ > std::chrono::seconds(1)) {
        targets_.clear();
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(dir_, ec)) {
            if (entry.path().extension() == ".sock") targets_.push_back(entry.path().string());
        }
        listed_at_ = now;
    }
    const char byte = 'j';
    for (const auto& target : targets_) {
        sockaddr_un addr{};
        if (!make_address(target, addr)) continue;
        // Errors (ECONNREFUSED for a dead worker's socket, EAGAIN for a busy one) are fine.
        (void)::sendto(fd_.get(), &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
                       reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    }
}

}  // namespace kiln::jobs
