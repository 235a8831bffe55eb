#include "tests/integration/support/db_proxy.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>

namespace kiln::test {
namespace {

// MariaDB client/server protocol: each packet is a 3-byte little-endian payload length, a
// sequence number, then the payload; a command's payload starts with the command byte.
constexpr unsigned char com_query = 0x03;
constexpr unsigned char com_stmt_prepare = 0x16;
constexpr unsigned char com_stmt_execute = 0x17;

// The claim's UPDATE (core/jobs/queue.cpp), recognised in the text of a statement prepared.
constexpr std::string_view claim_update = "UPDATE jobs SET status = 'running'";

std::uint32_t little_endian(const std::string& s, std::size_t at, std::size_t bytes) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
        v |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
    }
    return v;
}

// Cuts one direction of a connection into packet payloads as its bytes arrive.
class PacketStream {
  public:
    void feed(const char* data, std::size_t size) { buffer_.append(data, size); }
    std::optional<std::string> next() {
        if (buffer_.size() < 4) return std::nullopt;
        const std::size_t length = little_endian(buffer_, 0, 3);
        if (buffer_.size() < 4 + length) return std::nullopt;
        std::string payload = buffer_.substr(4, length);
        buffer_.erase(0, 4 + length);
        return payload;
    }

  private:
    std::string buffer_;
};

bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        // MSG_NOSIGNAL: a peer that closed must not raise SIGPIPE in the test binary.
        const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

sockaddr_un unix_address(const std::filesystem::path& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.string().size() >= sizeof addr.sun_path) throw std::runtime_error("path too long");
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    return addr;
}

}  // namespace

DbProxy::DbProxy(std::filesystem::path listen, std::filesystem::path upstream)
    : listen_path_(std::move(listen)),
      upstream_(std::move(upstream)),
      listener_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)),
      stop_(::eventfd(0, EFD_CLOEXEC)) {
    std::filesystem::remove(listen_path_);
    const sockaddr_un addr = unix_address(listen_path_);
    if (!listener_.valid() || !stop_.valid() ||
        ::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_.get(), 64) != 0) {
        throw std::runtime_error("db proxy: cannot listen on " + listen_path_.string());
    }
    acceptor_ = std::thread([this] { accept_loop(); });
}

DbProxy::~DbProxy() {
    const std::uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    acceptor_.join();
    std::lock_guard lock(threads_mutex_);
    for (auto& t : threads_) t.join();
    std::filesystem::remove(listen_path_);
}

std::string DbProxy::url(const std::string& user, const std::string& name) const {
    return "mariadb://" + user + "@localhost/" + name + "?socket=" + listen_path_.string();
}

void DbProxy::accept_loop() {
    while (true) {
        pollfd fds[] = {{listener_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        const int ready = ::poll(fds, 2, -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0 || fds[1].revents != 0) return;
        util::UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client.valid()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));  // e.g. EMFILE: no spin
            continue;
        }
        std::lock_guard lock(threads_mutex_);
        threads_.emplace_back([this, fd = client.release()] { relay(util::UniqueFd(fd)); });
    }
}

void DbProxy::relay(util::UniqueFd client) {
    util::UniqueFd server(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = unix_address(upstream_);
    if (::connect(server.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        return;
    }
    PacketStream from_client;
    PacketStream from_server;
    std::set<std::uint32_t> claim_statements;  // ids the server gave the claim's UPDATE
    bool awaiting_prepare_answer = false;
    bool preparing_claim = false;
    bool claim_in_transaction = false;
    const int cuts_at_start = cuts_;
    char buffer[65536];
    while (true) {
        pollfd fds[] = {
            {client.get(), POLLIN, 0}, {server.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        // Woken every 20 ms to see whether cut_all() was called.
        const int ready = ::poll(fds, 3, 20);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0 || fds[2].revents != 0 || cuts_ != cuts_at_start) return;
        if (ready == 0) continue;
        if (fds[0].revents != 0) {
            const ssize_t n = ::read(client.get(), buffer, sizeof buffer);
            if (n <= 0 || !write_all(server.get(), buffer, static_cast<std::size_t>(n))) return;
            from_client.feed(buffer, static_cast<std::size_t>(n));
            bool break_now = false;
            while (auto packet = from_client.next()) {
                if (packet->empty()) continue;
                const auto command = static_cast<unsigned char>((*packet)[0]);
                if (command == com_stmt_prepare) {
                    awaiting_prepare_answer = true;
                    preparing_claim = packet->find(claim_update) != std::string::npos;
                } else if (command == com_stmt_execute && packet->size() >= 5) {
                    if (claim_statements.contains(little_endian(*packet, 1, 4))) {
                        claim_in_transaction = true;
                    }
                } else if (command == com_query) {
                    const std::string_view query = std::string_view(*packet).substr(1);
                    if (query == "COMMIT" && claim_in_transaction && armed_.exchange(false)) {
                        break_now = true;
                    }
                    if (query == "COMMIT" || query == "ROLLBACK") claim_in_transaction = false;
                }
            }
            if (break_now) {
                // The COMMIT is on its way: its answer means it was applied. Drop the answer
                // and close both sides, as a crash or a broken network would.
                pollfd answer{server.get(), POLLIN, 0};
                if (::poll(&answer, 1, 10000) > 0)
                    (void)!::read(server.get(), buffer, sizeof buffer);
                ++broken_;
                return;
            }
        }
        if (fds[1].revents != 0) {
            const ssize_t n = ::read(server.get(), buffer, sizeof buffer);
            if (n <= 0) return;
            from_server.feed(buffer, static_cast<std::size_t>(n));
            while (auto packet = from_server.next()) {
                // The client waits for each answer before its next command, so the first
                // packet after a prepare is that prepare's answer: 0x00, then the statement id.
                if (!awaiting_prepare_answer) continue;
                awaiting_prepare_answer = false;
                if (preparing_claim && packet->size() >= 5 && (*packet)[0] == 0) {
                    claim_statements.insert(little_endian(*packet, 1, 4));
                }
            }
            if (!write_all(client.get(), buffer, static_cast<std::size_t>(n))) return;
        }
    }
}

}  // namespace kiln::test
