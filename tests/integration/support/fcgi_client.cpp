#include "tests/integration/support/fcgi_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kiln::test {
namespace {

// Record types and the responder role of the FastCGI 1.0 specification.
constexpr unsigned char begin_request = 1;
constexpr unsigned char end_request = 3;
constexpr unsigned char params_record = 4;
constexpr unsigned char stdin_record = 5;
constexpr unsigned char stdout_record = 6;
constexpr unsigned char responder_role = 1;
constexpr unsigned char keep_conn_flag = 1;
constexpr std::size_t header_size = 8;
constexpr std::size_t max_content = 65535;

void append_length(std::string& out, std::size_t n) {
    if (n < 128) {
        out.push_back(static_cast<char>(n));
    } else {
        out.push_back(static_cast<char>(((n >> 24) & 0x7f) | 0x80));
        out.push_back(static_cast<char>((n >> 16) & 0xff));
        out.push_back(static_cast<char>((n >> 8) & 0xff));
        out.push_back(static_cast<char>(n & 0xff));
    }
}

}  // namespace

FcgiConnection::FcgiConnection(const std::filesystem::path& socket) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = socket.string();
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const std::string why = std::strerror(errno);
        if (fd_ >= 0) ::close(fd_);
        throw std::runtime_error("connect " + path + ": " + why);
    }
}

FcgiConnection::~FcgiConnection() {
    if (fd_ >= 0) ::close(fd_);
}

void FcgiConnection::write_record(unsigned char type, const std::string& content) {
    std::string record(header_size, '\0');
    record[0] = 1;  // version
    record[1] = static_cast<char>(type);
    record[3] = 1;  // request id 1, as nginx uses
    record[4] = static_cast<char>(content.size() >> 8);
    record[5] = static_cast<char>(content.size() & 0xff);
    record += content;
    std::size_t done = 0;
    while (done < record.size()) {
        const ssize_t n = ::send(fd_, record.data() + done, record.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
        done += static_cast<std::size_t>(n);
    }
}

void FcgiConnection::send(const std::vector<std::pair<std::string, std::string>>& params,
                          const std::string& body, std::optional<std::size_t> content_length,
                          bool keep_connection) {
    std::string begin(8, '\0');
    begin[1] = static_cast<char>(responder_role);
    begin[2] = static_cast<char>(keep_connection ? keep_conn_flag : 0);
    write_record(begin_request, begin);
    std::string encoded;
    for (const auto& [name, value] : params) {
        append_length(encoded, name.size());
        append_length(encoded, value.size());
        encoded += name;
        encoded += value;
    }
    const std::size_t length = content_length.value_or(body.size());
    append_length(encoded, 14);
    append_length(encoded, std::to_string(length).size());
    encoded += "CONTENT_LENGTH" + std::to_string(length);
    for (std::size_t at = 0; at < encoded.size(); at += max_content) {
        write_record(params_record, encoded.substr(at, max_content));
    }
    write_record(params_record, "");
    send_body(body, body.size() == length);
}

void FcgiConnection::send_body(const std::string& data, bool last) {
    for (std::size_t at = 0; at < data.size(); at += max_content) {
        write_record(stdin_record, data.substr(at, max_content));
    }
    if (last) write_record(stdin_record, "");
}

bool FcgiConnection::read_exact(char* out, std::size_t size,
                                std::chrono::steady_clock::time_point deadline) {
    std::size_t got = 0;
    while (got < size) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        const ssize_t n = ::recv(fd_, out + got, size - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<std::size_t>(n);
    }
    return true;
}

FcgiReply FcgiConnection::receive(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    FcgiReply reply;
    while (true) {
        unsigned char header[header_size];
        if (!read_exact(reinterpret_cast<char*>(header), header_size, deadline)) return reply;
        const std::size_t content = (std::size_t{header[4]} << 8) | header[5];
        std::string data(content + header[6], '\0');
        if (!read_exact(data.data(), data.size(), deadline)) return reply;
        if (header[1] == stdout_record) reply.stdout_data.append(data, 0, content);
        if (header[1] == end_request) {
            reply.ended = true;
            return reply;
        }
    }
}

bool FcgiConnection::closed_by_server(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char byte;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const ssize_t n = ::recv(fd_, &byte, 1, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0 && errno != EINTR) return true;
    }
    return false;
}

std::vector<std::pair<std::string, std::string>> fcgi_params(const std::string& method,
                                                             const std::string& path,
                                                             const std::string& token) {
    std::vector<std::pair<std::string, std::string>> params = {
        {"REQUEST_METHOD", method}, {"DOCUMENT_URI", path}, {"QUERY_STRING", ""}};
    if (!token.empty()) params.emplace_back("HTTP_AUTHORIZATION", "Bearer " + token);
    return params;
}

}  // namespace kiln::test
