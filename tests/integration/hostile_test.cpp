// Hostile input, end to end through nginx: every request below is answered with a 4xx (a
// problem document with a `code` when kiln-api answers it, nginx's own page when nginx refuses
// it first) or ends as a failed job with a clear reason; none leaves a job row or a stored file
// it should not, none writes outside the storage root, and the services are still up afterwards
// (checked after every test).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "core/util/crypto.hpp"
#include "core/util/fd.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/jobs.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/multipart.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---- Raw HTTP ---------------------------------------------------------------------------------

// A response read off the socket by hand; status 0 when none came.
struct RawReply {
    std::uint64_t sent = 0;  // request bytes the server took before answering or closing
    std::string raw;
    long status = 0;
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;
};

RawReply parse_reply(std::string raw) {
    RawReply r;
    r.raw = std::move(raw);
    if (r.raw.rfind("HTTP/1.", 0) != 0 || r.raw.size() < 12) return r;
    r.status = std::stol(r.raw.substr(9, 3));
    const auto end = r.raw.find("\r\n\r\n");
    const std::string head = r.raw.substr(0, end);
    r.body = end == std::string::npos ? "" : r.raw.substr(end + 4);
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos) {
        const std::size_t next = head.find("\r\n", pos + 2);
        const std::string line =
            head.substr(pos + 2, next == std::string::npos ? next : next - pos - 2);
        if (auto colon = line.find(':'); colon != std::string::npos) {
            std::string name = line.substr(0, colon);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            r.headers[name] = value;
        }
        pos = next;
    }
    return r;
}

// A TCP connection to host:port of `url`.
util::UniqueFd connect_to(const std::string& url) {
    const int port = std::stoi(url.substr(url.rfind(':') + 1));
    util::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        throw std::runtime_error("connect failed");
    }
    return fd;
}

// A connection that has sent `bytes` (small: fits the socket buffers) and stays open until the
// returned fd is closed: the client going away at a moment of the test's choosing.
util::UniqueFd send_and_hold(const std::string& url, const std::string& bytes) {
    util::UniqueFd fd = connect_to(url);
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = send(fd.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) throw std::runtime_error("send failed");
        sent += static_cast<std::size_t>(n);
    }
    return fd;
}

// Sends `head`, then `filler` bytes of 'x', then `tail` over one connection, reading whatever
// the server answers meanwhile (as a real client does: a server may answer before the body is
// all sent). Sending stops at the first send error (the server closed); then reads until EOF, an
// error or `read_timeout`.
RawReply raw_exchange(const std::string& url, const std::string& head, std::uint64_t filler = 0,
                      const std::string& tail = "", std::chrono::milliseconds read_timeout = 20s) {
    util::UniqueFd fd = connect_to(url);
    const std::string filler_chunk(256 * 1024, 'x');
    const std::uint64_t total = head.size() + filler + tail.size();
    std::uint64_t sent = 0;
    std::string in;
    char buf[16384];
    bool peer_closed = false;
    // The bytes at offset `at` of the request, at most `max` of them.
    auto slice = [&](std::uint64_t at, std::size_t max) -> std::string_view {
        if (at < head.size()) return std::string_view(head).substr(at, max);
        at -= head.size();
        if (at < filler) {
            return std::string_view(filler_chunk)
                .substr(0, static_cast<std::size_t>(
                               std::min<std::uint64_t>({filler - at, filler_chunk.size(), max})));
        }
        return std::string_view(tail).substr(at - filler, max);
    };
    while (sent < total && !peer_closed) {
        pollfd p{fd.get(), POLLIN | POLLOUT, 0};
        if (poll(&p, 1, 30000) <= 0) break;  // stalled: the server stopped reading
        if (p.revents & POLLIN) {
            ssize_t n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0)
                in.append(buf, static_cast<std::size_t>(n));
            else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                peer_closed = true;
        }
        if (p.revents & (POLLERR | POLLHUP)) break;
        if (p.revents & POLLOUT) {
            auto bytes = slice(sent, 256 * 1024);
            ssize_t n = send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                sent += static_cast<std::uint64_t>(n);
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                break;
        }
    }
    pollfd p{fd.get(), POLLIN, 0};
    while (!peer_closed && poll(&p, 1, static_cast<int>(read_timeout.count())) > 0) {
        ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
    }
    RawReply reply = parse_reply(std::move(in));
    reply.sent = sent;
    return reply;
}

// The request head of a POST to /api/v1/jobs (marker in the query string, which kiln-api
// ignores, to find the request in nginx's access log).
std::string post_head(const std::string& token, const std::string& content_type,
                      std::uint64_t content_length, const std::string& marker = "") {
    return "POST /api/v1/jobs" + (marker.empty() ? "" : "?hostile=" + marker) +
           " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token +
           "\r\nContent-Type: " + content_type +
           "\r\nContent-Length: " + std::to_string(content_length) +
           "\r\nConnection: close\r\n\r\n";
}

// ---- Generated hostile files ------------------------------------------------------------------

std::uint32_t crc32(std::string_view bytes) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : bytes) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}
std::string le16(std::uint16_t v) { return {static_cast<char>(v), static_cast<char>(v >> 8)}; }
std::string le32(std::uint32_t v) {
    return {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
            static_cast<char>(v >> 24)};
}

std::string png_chunk(const std::string& type, const std::string& data) {
    return be32(static_cast<std::uint32_t>(data.size())) + type + data + be32(crc32(type + data));
}

// A ~1 KiB PNG whose IHDR (correct CRC) declares width x height 8-bit RGB, with an IDAT that is
// the start of a valid zlib stream (one stored block of zeros): a decoder that trusts the
// header allocates width*height*3 bytes before it notices the data ends.
std::string image_bomb_png(std::uint32_t width, std::uint32_t height) {
    std::string ihdr = be32(width) + be32(height) + std::string{8, 2, 0, 0, 0};
    std::string zeros(1024, '\0');
    std::string idat = std::string{0x78, 0x01} + std::string(1, '\0') /* stored, not final */ +
                       le16(1024) + le16(static_cast<std::uint16_t>(~1024u)) + zeros;
    return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", idat) +
           png_chunk("IEND", "");
}

// A ZIP archive (one stored member) whose offsets count `base` bytes before it, so that the
// concatenation prefix + zip is a valid ZIP as well as whatever the prefix is.
std::string zip_with_one_file(std::size_t base, const std::string& name, const std::string& data) {
    const std::uint32_t crc = crc32(data);
    const auto size = static_cast<std::uint32_t>(data.size());
    const auto name_len = static_cast<std::uint16_t>(name.size());
    std::string local = le32(0x04034b50) + le16(20) + le16(0) + le16(0) + le16(0) + le16(0) +
                        le32(crc) + le32(size) + le32(size) + le16(name_len) + le16(0) + name +
                        data;
    std::string central = le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(0) + le16(0) +
                          le16(0) + le32(crc) + le32(size) + le32(size) + le16(name_len) + le16(0) +
                          le16(0) + le16(0) + le16(0) + le32(0) +
                          le32(static_cast<std::uint32_t>(base)) + name;
    std::string end = le32(0x06054b50) + le16(0) + le16(0) + le16(1) + le16(1) +
                      le32(static_cast<std::uint32_t>(central.size())) +
                      le32(static_cast<std::uint32_t>(base + local.size())) + le16(0);
    return local + central + end;
}

fs::path write_scratch(const std::string& name, const std::string& bytes) {
    fs::path path = scratch_dir() / name;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    return path;
}

// ---- Checks -----------------------------------------------------------------------------------

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t len = b < 0x80         ? 1
                          : (b >> 5) == 6  ? 2
                          : (b >> 4) == 14 ? 3
                          : (b >> 3) == 30 ? 4
                                           : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        }
        i += len;
    }
    return true;
}

// One path component that cannot climb, hide or name a device.
bool plain_component(const std::string& name) {
    return !name.empty() && name != "." && name != ".." && name.front() != '.' &&
           name.front() != '-' &&
           name.find_first_of(std::string("/\\\0", 3)) == std::string::npos && valid_utf8(name);
}

class Hostile : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();
    std::map<std::string, int> pids_;  // every process of the stack, by pid file name

    void SetUp() override {
        for (const auto& entry : fs::directory_iterator(stack.var / "run")) {
            if (entry.path().extension() != ".pid") continue;
            std::ifstream in(entry.path());
            int pid = 0;
            in >> pid;
            if (pid > 0) pids_[entry.path().stem().string()] = pid;
        }
        ASSERT_TRUE(pids_.count("kiln-api")) << "no kiln-api pid file";
    }

    // The services stay up: /health answers 200 and every process of the stack is the one that
    // was there before the test (none crashed, none was restarted).
    void TearDown() override {
        auto health = client.get("/health");
        EXPECT_EQ(health.status, 200) << health.body;
        for (const auto& [name, pid] : pids_) {
            EXPECT_EQ(kill(pid, 0), 0) << name << " (pid " << pid << ") is gone";
        }
    }

    // A kiln-api problem response with `status` and `code`.
    static void expect_problem(long got_status, const std::string& content_type,
                               const std::string& body, long status, const std::string& code) {
        EXPECT_EQ(got_status, status) << body;
        EXPECT_EQ(content_type, "application/problem+json") << body;
        auto json = nlohmann::json::parse(body, nullptr, false);
        ASSERT_TRUE(json.is_object()) << body;
        EXPECT_EQ(json["code"], code) << body;
        EXPECT_EQ(json["status"], status) << body;
    }
    static void expect_problem(const HttpResult& r, long status, const std::string& code) {
        expect_problem(r.status, r.header("content-type"), r.body, status, code);
    }
    static void expect_problem(const RawReply& r, long status, const std::string& code) {
        const auto it = r.headers.find("content-type");
        expect_problem(r.status, it == r.headers.end() ? "" : it->second, r.body, status, code);
    }

    struct Snapshot {
        std::int64_t rows;
        std::size_t sources;
    };
    Snapshot snapshot() const { return {stack.job_rows(), stack.files_in("sources").size()}; }

    // Upload staging under tmp/ (kiln-api's "sources-{job}-{random}" directories; workers' work
    // directories for jobs of earlier tests may live there too and are not this request's).
    std::vector<fs::path> staging_entries(bool files_only = false) const {
        const fs::path tmp = stack.config.storage_root / "tmp";
        std::vector<fs::path> candidates;
        if (files_only) {
            candidates = stack.files_in("tmp");
        } else {
            std::error_code ec;
            for (auto it = fs::directory_iterator(tmp, ec); !ec && it != fs::end(it);
                 it.increment(ec)) {
                candidates.push_back(it->path());
            }
        }
        std::vector<fs::path> out;
        for (const auto& p : candidates) {
            if (p.lexically_relative(tmp).begin()->string().starts_with("sources-")) {
                out.push_back(p);
            }
        }
        return out;
    }

    static bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(20ms);
        }
        return true;
    }

    // No row added, no source file kept, no staging directory or file left. Staging is removed
    // when kiln-api gives up on the request, which for a vanished client is when nginx closes the
    // FastCGI stream: wait a little for it.
    void expect_nothing_kept(const Snapshot& before) const {
        const bool clean = wait_until([&] { return staging_entries().empty(); }, 5s);
        EXPECT_TRUE(clean) << "upload staging left in " << stack.config.storage_root / "tmp";
        EXPECT_EQ(stack.job_rows(), before.rows);
        EXPECT_EQ(stack.files_in("sources").size(), before.sources);
    }

    // Waits for jobs a test created to end, so that none is still running in the next test.
    void settle(const std::vector<std::string>& ids) const {
        for (const auto& id : ids) (void)watch_job(client, id, 120s);
    }

    // The status nginx logged for the request carrying `marker` (0 when not logged in time).
    long logged_status(const std::string& marker) const {
        for (int i = 0; i < 100; ++i) {
            std::ifstream log(stack.var / "log" / "nginx-access.log");
            std::string line;
            while (std::getline(log, line)) {
                if (line.find(marker) == std::string::npos) continue;
                // combined format: ... "METHOD URI HTTP/1.1" STATUS BYTES ...
                auto quote = line.find("HTTP/1.1\" ");
                if (quote != std::string::npos) return std::stol(line.substr(quote + 10, 3));
            }
            std::this_thread::sleep_for(50ms);
        }
        return 0;
    }

    std::string download_source(const std::string& id, const std::string& name,
                                HttpResult* out = nullptr) {
        auto r = client.get("/api/v1/jobs/" + id + "/sources/" + name);
        EXPECT_EQ(r.status, 200) << r.body;
        if (out != nullptr) *out = r;
        return r.body;
    }
};

// ---- Truncated and oversized bodies -----------------------------------------------------------

// The client announces more than it sends and goes away once kiln-api is inside the upload:
// right after the HTTP headers (kiln-api has made its staging directory and waits for the
// body), right after a file part's headers (that staged file exists, empty), and in the middle
// of a file's data with the closing boundary never sent. kiln-api reads the body in 256 KiB
// blocks (FCGX_GetStr waits for a full one), so the bodies are laid out for the cut to fall
// just after a block it has processed. No response can reach a client that has gone; nginx logs
// 400 ("client prematurely closed connection"), kiln-api sees the FastCGI stream end before
// CONTENT_LENGTH and drops its staging directory.
TEST_F(Hostile, TruncatedBodiesLeaveNoRowAndNoFile) {
    constexpr std::size_t block = 256 * 1024;
    const std::string png = read_file(media::png());

    // Second file's headers end exactly at the first block's end.
    std::string after_headers = multipart::field("type", "test.noop") +
                                multipart::file_head("; filename=\"one.bin\"") +
                                std::string(1, '\0');
    const std::string second = "\r\n" + multipart::file_head("; filename=\"two.bin\"");
    after_headers += std::string(block - after_headers.size() - second.size(), 'o') + second;
    ASSERT_EQ(after_headers.size(), block);

    // A PNG's data running past the first block, no closing boundary.
    std::string mid_data = multipart::field("type", "image.thumbnails") +
                           multipart::file_head("; filename=\"cut.png\"", "image/png") + png;
    mid_data += std::string(block + 1000 - mid_data.size(), 'x');

    struct Cut {
        std::string what;
        std::string body;
        std::size_t staged_files;  // what kiln-api has staged when the client goes
    };
    const std::vector<Cut> cuts = {
        {"after-http-headers", "", 0},
        {"after-part-headers", after_headers, 2},
        {"mid-data-no-closing-boundary", mid_data, 1},
    };
    for (const auto& cut : cuts) {
        SCOPED_TRACE(cut.what);
        const auto before = snapshot();
        ASSERT_TRUE(staging_entries().empty());
        const std::string marker = "trunc-" + util::new_job_id();
        // The full body would be 10 MB: under both converters' limits, so only the cut can end
        // it.
        auto fd = send_and_hold(
            stack.url,
            post_head(stack.admin_token, multipart::content_type(), 10'000'000, marker) + cut.body);
        const bool inside = wait_until(
            [&] {
                return cut.staged_files == 0
                           ? !staging_entries().empty()
                           : staging_entries(/*files_only=*/true).size() == cut.staged_files;
            },
            5s);
        EXPECT_TRUE(inside) << "kiln-api never got that far into the upload";
        fd.reset();  // the client goes away
        expect_nothing_kept(before);
        const long status = logged_status(marker);
        EXPECT_GE(status, 400) << "nginx access log status for " << marker;
        EXPECT_LT(status, 500) << "nginx access log status for " << marker;
    }
}

// The file part comes before `type`, so while streaming kiln-api can only apply the largest
// limit of any converter (4 GiB); the body, with a correct Content-Length, is read to its end,
// and the final check against image.thumbnails' 50 MiB answers 413 and drops the staged file.
// (errors_test covers the usual order, type first, where the limit stops the stream.)
TEST_F(Hostile, FileOverTheLimitSentBeforeTheTypeIs413AndLeavesNothing) {
    const auto before = snapshot();
    std::uint64_t limit = 0;
    const auto types = client.get("/api/v1/types");
    for (const auto& t : types.json()["types"]) {
        if (t["name"] == "image.thumbnails") limit = t["max_upload_bytes"];
    }
    ASSERT_GT(limit, 0u);
    auto big = make_file("before-type.png", read_file(media::png()), limit + 1);
    auto r =
        client.post_multipart("/api/v1/jobs", {{"file", "", big}, {"type", "image.thumbnails"}});
    expect_problem(r, 413, "payload_too_large");
    expect_nothing_kept(before);
    fs::remove(big);
}

// Type first, then a file far over the limit: kiln-api stops reading at the limit and answers
// 413 while the client is still sending. The client must get that 413 (not a 502/503 made up
// by nginx because kiln-api closed the FastCGI connection with body still unread), and it must
// come before the whole 120 MiB is pushed.
TEST_F(Hostile, StreamFarOverTheLimitGets413BeforeItEnds) {
    const auto before = snapshot();
    const std::string head = multipart::field("type", "image.thumbnails") +
                             multipart::file_head("; filename=\"huge.png\"", "image/png") +
                             read_file(media::png());
    const std::string tail = "\r\n" + multipart::closing();
    const std::uint64_t filler = 120ull * 1024 * 1024;
    const auto started = std::chrono::steady_clock::now();
    auto r = raw_exchange(stack.url,
                          post_head(stack.admin_token, multipart::content_type(),
                                    head.size() + filler + tail.size()) +
                              head,
                          filler, tail);
    const auto took = std::chrono::steady_clock::now() - started;
    expect_problem(r, 413, "payload_too_large");
    EXPECT_LT(r.sent, head.size() + filler) << "the 413 came only after the whole body";
    expect_nothing_kept(before);
    RecordProperty("seconds_to_413", std::to_string(std::chrono::duration<double>(took).count()));
}

// A declared length over client_max_body_size (4 GiB, the same as [api] max_request_bytes) is
// refused by nginx before a byte of body is read, with kiln's 413 problem (nginx's error_page).
// A length nginx cannot parse (2^64 and beyond, negative, not an integer) is nginx's plain 400.
TEST_F(Hostile, ContentLengthsOutOfRangeAreRefusedByNginx) {
    const auto before = snapshot();
    auto head = [&](const std::string& length) {
        return "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
               stack.admin_token + "\r\nContent-Type: " + multipart::content_type() +
               "\r\nContent-Length: " + length + "\r\nConnection: close\r\n\r\n";
    };
    auto over =
        raw_exchange(stack.url, head("4294967297") + multipart::field("type", "image.thumbnails"));
    expect_problem(over, 413, "payload_too_large");
    auto far_over = raw_exchange(stack.url, head("5368709120"));
    expect_problem(far_over, 413, "payload_too_large");
    for (const char* bad : {"18446744073709551616", "99999999999999999999999", "-1", "1e3"}) {
        SCOPED_TRACE(bad);
        auto r = raw_exchange(stack.url, head(bad));
        EXPECT_EQ(r.status, 400) << r.raw;
    }
    expect_nothing_kept(before);
}

// ---- Boundaries inside data -------------------------------------------------------------------

// RFC 2046: a delimiter is CRLF "--" boundary at the start of a line. The boundary string
// anywhere else is data: at the very start of the part data (the CRLF that ends the part headers
// belongs to them), after a bare LF or a bare CR, after CRLF "-" only, CRLF "--" and a prefix of
// the boundary, and a delimiter prefix split across kiln-api's 256 KiB read chunks. The stored
// file is byte for byte what was sent.
TEST_F(Hostile, BoundaryLookalikesInsideDataAreStoredByteForByte) {
    const std::string b(multipart::boundary);
    const std::string prefix = multipart::field("type", "test.noop") +
                               multipart::file_head("; filename=\"lookalikes.bin\"");
    std::string data = "--" + b + "\r\n";
    data += std::string("\x00\x01\x02\x03binary", 10);
    data += "x--" + b + "--\r\n";
    data += "\n--" + b + "\r\n";
    data += "\r--" + b + "\r\n";
    data += "\r\n-" + b + "\r\n";
    data += "\r\n--" + b.substr(0, b.size() - 1) + "Y\r\n";
    data += "\r\n\r\n--kiln\r\n--";
    data += "--" + b + "--";
    // A delimiter prefix that ends exactly where kiln-api's first 256 KiB read ends, continued by
    // a byte that is not the boundary's: the held-back bytes must come out as data.
    constexpr std::size_t chunk = 256 * 1024;
    const std::string split = "\r\n--" + b.substr(0, 5);
    const std::size_t at = chunk - prefix.size() - split.size();
    ASSERT_GT(at, data.size());
    data += std::string(at - data.size(), 'z');
    data += split + "Z rest of the data";
    // And once more at the second chunk's end, continued by a real delimiter's first byte.
    const std::size_t at2 = 2 * chunk - prefix.size() - split.size();
    data += std::string(at2 - data.size(), 'q');
    data += split + "\r\n--" + b.substr(0, 3) + "-still data";
    data += std::string("\xff\xfe\x00\r", 4);  // ends in a CR: the real delimiter follows it

    const std::string body = prefix + data + "\r\n" + multipart::closing();
    auto r =
        client.send("POST", "/api/v1/jobs", body, {"Content-Type: " + multipart::content_type()});
    ASSERT_EQ(r.status, 201) << r.body;
    const auto& src = r.json()["sources"][0];
    EXPECT_EQ(src["size"], data.size());
    EXPECT_EQ(src["sha256"], util::sha256_hex(data));
    const std::string id = r.json()["id"];
    const std::string stored = download_source(id, src["name"]);
    EXPECT_EQ(stored.size(), data.size());
    EXPECT_EQ(util::sha256_hex(stored), util::sha256_hex(data));
    settle({id});
}

// CRLF "--" boundary followed by anything but "--", padding or CRLF is a delimiter with garbage
// after it, not data: RFC 2046 5.1.1 says it is enough that the boundary appears in its entirety
// after a CRLF, and forbids the delimiter inside a part. kiln-api refuses the body as malformed
// (a parser that took it as data would disagree with one in front of it about where the part
// ends) and keeps nothing.
TEST_F(Hostile, FullDelimiterFollowedByOtherBytesInsideDataIs400AndLeavesNothing) {
    const std::string b(multipart::boundary);
    for (const std::string& inside :
         {"\r\n--" + b + "X", "\r\n--" + b + "-x", "\r\n--" + b + "\rx"}) {
        SCOPED_TRACE(nlohmann::json(inside).dump());
        const auto before = snapshot();
        const std::string data = std::string("\x00\x01 data ", 8) + inside + " more data";
        const std::string body = multipart::field("type", "test.noop") +
                                 multipart::file_head("; filename=\"inside.bin\"") + data + "\r\n" +
                                 multipart::closing();
        auto r = client.send("POST", "/api/v1/jobs", body,
                             {"Content-Type: " + multipart::content_type()});
        expect_problem(r, 400, "invalid_request");
        expect_nothing_kept(before);
    }
}

// ---- Many parts, long header lines ------------------------------------------------------------

// 10,000 one-byte file parts (about 1 MB of body): kiln-api refuses the 17th file ([api]
// max_parts files when no type came first) with 413 long before the body ends, so it stops
// reading with most of it unread; the client still gets the 413.
TEST_F(Hostile, TenThousandTinyPartsAre413AndLeaveNothing) {
    const auto before = snapshot();
    std::string body;
    for (int i = 0; i < 10000; ++i) {
        body += multipart::file_head("; filename=\"p" + std::to_string(i) + ".bin\"") + "x\r\n";
    }
    body += multipart::closing();
    auto r = raw_exchange(
        stack.url, post_head(stack.admin_token, multipart::content_type(), body.size()) + body);
    expect_problem(r, 413, "payload_too_large");
    expect_nothing_kept(before);

    // The same number of parts that are form fields: the second "type" is refused at once.
    std::string fields;
    for (int i = 0; i < 10000; ++i) fields += multipart::field("type", "test.noop");
    fields += multipart::closing();
    auto f = raw_exchange(
        stack.url, post_head(stack.admin_token, multipart::content_type(), fields.size()) + fields);
    expect_problem(f, 400, "invalid_request");
    expect_nothing_kept(before);
}

// A 1 MiB line where nginx reads it (a request header, the request line) is refused by nginx
// with its own page (large_client_header_buffers 4 8k: 400 "Request Header Or Cookie Too Large",
// 414 for the request line); a 1 MiB line in a part header reaches kiln-api, whose multipart
// parser refuses a part header block over max_part_header_bytes (8 KiB) with 413.
TEST_F(Hostile, OneMebibyteHeaderLinesAre400Or414FromNginxAnd413InAPart) {
    const auto before = snapshot();
    const std::string mib(1024 * 1024, 'a');

    auto header = raw_exchange(
        stack.url, "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nX-Hostile: " + mib +
                       "\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(header.status, 400) << header.raw.substr(0, 300);

    auto auth = raw_exchange(stack.url,
                             "GET /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\n"
                             "Authorization: Bearer " +
                                 mib + "\r\n\r\n");
    EXPECT_EQ(auth.status, 400) << auth.raw.substr(0, 300);

    auto line =
        raw_exchange(stack.url, "GET /api/v1/jobs/" + mib + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_EQ(line.status, 414) << line.raw.substr(0, 300);

    // No Content-Type header in the part: its headers are just the over-long file name.
    const std::string body = multipart::field("type", "image.thumbnails") + "--" +
                             std::string(multipart::boundary) +
                             "\r\nContent-Disposition: form-data; name=\"file\"; "
                             "filename=\"" +
                             mib + ".png\"\r\n\r\nPNG\r\n" + multipart::closing();
    auto part = raw_exchange(
        stack.url, post_head(stack.admin_token, multipart::content_type(), body.size()) + body);
    expect_problem(part, 413, "payload_too_large");
    expect_nothing_kept(before);
}

// ---- File names -------------------------------------------------------------------------------

// A NUL byte as such is a control character in a part header: 400. Percent-encoded in
// filename* (RFC 8187) it decodes to a NUL that the name sanitiser drops: the job is created
// with a plain stored name and the original kept as metadata, and the JSON says \u0000.
TEST_F(Hostile, NulInFileNamesIsRefusedRawAndDroppedWhenEncoded) {
    const std::string png = read_file(media::png());
    const auto before = snapshot();
    for (const std::string& disposition :
         {std::string("; filename=\"a\0b.png\"", 20), std::string("; filename=\"\0\"", 14),
          std::string("; filename=\"ok.png\"; x=\"\0\"", 26)}) {
        SCOPED_TRACE(nlohmann::json(disposition).dump());
        const std::string body = multipart::field("type", "image.thumbnails") +
                                 multipart::file_head(disposition, "image/png") + png + "\r\n" +
                                 multipart::closing();
        auto r = client.send("POST", "/api/v1/jobs", body,
                             {"Content-Type: " + multipart::content_type()});
        expect_problem(r, 400, "invalid_request");
        expect_nothing_kept(before);
    }

    struct Case {
        std::string disposition;
        std::string stored;
        std::string original;
    };
    // The original name is metadata: kept, with the NUL shown as U+FFFD.
    const std::vector<Case> encoded = {
        {"; filename*=UTF-8''a%00b.png", "ab.png",
         "a\xEF\xBF\xBD"
         "b.png"},
        {"; filename*=UTF-8''evil.png%00.mp4", "evil.png.mp4", "evil.png\xEF\xBF\xBD.mp4"},
        {"; filename*=UTF-8''%00", "file", "\xEF\xBF\xBD"},
    };
    std::vector<std::string> ids;
    for (const auto& c : encoded) {
        SCOPED_TRACE(c.disposition);
        const std::string body = multipart::field("type", "image.thumbnails") +
                                 multipart::file_head(c.disposition, "image/png") + png + "\r\n" +
                                 multipart::closing();
        auto r = client.send("POST", "/api/v1/jobs", body,
                             {"Content-Type: " + multipart::content_type()});
        ASSERT_EQ(r.status, 201) << r.body;
        auto json = nlohmann::json::parse(r.body);  // strict: throws on invalid UTF-8
        const std::string name = json["sources"][0]["name"];
        EXPECT_EQ(name, c.stored);
        EXPECT_TRUE(plain_component(name)) << name;
        EXPECT_EQ(json["sources"][0]["original_name"], c.original);
        EXPECT_TRUE(fs::exists(stack.config.storage_root / "sources" /
                               json["id"].get<std::string>() / name));
        ids.push_back(json["id"]);
    }
    settle(ids);
}

// Traversal in every spelling (../, ..\, absolute, percent-encoded in filename*, mixed
// separators, a drive letter) gives a stored name that is one plain component, the file lands
// in sources/{job}/, the worker converts it, and no file with the test's unique marker appears
// anywhere else: not in the storage root's other areas, its parent directories, the services'
// working directories, or /tmp.
TEST_F(Hostile, TraversalNamesNeverWriteOutsideTheStorageRoot) {
    const std::string marker = "kiln-hostile-" + util::new_job_id();
    const std::string png = read_file(media::png());
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"; filename=\"../../../../../../../../tmp/" + marker + "-a.png\"", marker + "-a.png"},
        {"; filename=\"..\\\\..\\\\..\\\\..\\\\tmp\\\\" + marker + "-b.png\"", marker + "-b.png"},
        {"; filename=\"..\\..\\..\\..\\tmp\\" + marker + "-c.png\"", marker + "-c.png"},
        {"; filename=\"/tmp/" + marker + "-d.png\"", marker + "-d.png"},
        {"; filename*=UTF-8''..%2F..%2F..%2F..%2Ftmp%2F" + marker + "-e.png", marker + "-e.png"},
        {"; filename*=UTF-8''..%5C..%5C..%5Ctmp%5C" + marker + "-f.png", marker + "-f.png"},
        {"; filename=\"....//....//" + marker + "-g.png\"", marker + "-g.png"},
        {"; filename=\"C:\\..\\..\\" + marker + "-h.png\"", marker + "-h.png"},
        {"; filename=\"" + marker + "-i.png/..\"", "file"},
        {"; filename=\"../" + marker + "-j.png/.\"", "file"},
    };
    std::set<fs::path> expected;
    std::vector<std::string> ids;
    for (const auto& [disposition, stored] : cases) {
        SCOPED_TRACE(disposition);
        const std::string body = multipart::field("type", "image.thumbnails") +
                                 multipart::file_head(disposition, "image/png") + png + "\r\n" +
                                 multipart::closing();
        auto r = client.send("POST", "/api/v1/jobs", body,
                             {"Content-Type: " + multipart::content_type()});
        ASSERT_EQ(r.status, 201) << r.body;
        const std::string name = r.json()["sources"][0]["name"];
        EXPECT_EQ(name, stored);
        EXPECT_TRUE(plain_component(name)) << name;
        const std::string id = r.json()["id"];
        ids.push_back(id);
        const fs::path stored_at =
            fs::weakly_canonical(stack.config.storage_root / "sources" / id / name);
        expected.insert(stored_at);
        EXPECT_TRUE(fs::exists(stored_at)) << stored_at;
    }
    // Let the workers run the converters on them too.
    for (const auto& id : ids) {
        auto w = watch_job(client, id, 120s);
        EXPECT_EQ(w.job["status"], "completed") << w.job.dump();
    }

    std::vector<fs::path> found;
    auto scan = [&](const fs::path& dir, bool recursive) {
        std::error_code ec;
        if (recursive) {
            for (auto it = fs::recursive_directory_iterator(
                     dir, fs::directory_options::skip_permission_denied, ec);
                 !ec && it != fs::end(it); it.increment(ec)) {
                if (it->path().filename().string().find(marker) != std::string::npos)
                    found.push_back(it->path());
            }
        } else {
            for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::end(it);
                 it.increment(ec)) {
                if (it->path().filename().string().find(marker) != std::string::npos)
                    found.push_back(it->path());
            }
        }
    };
    const fs::path root = fs::canonical(stack.config.storage_root);
    scan(root.parent_path(), /*recursive=*/true);  // the stack's directory, storage included
    for (fs::path p = root.parent_path(); p != p.root_path(); p = p.parent_path()) {
        scan(p.parent_path(), false);
    }
    scan("/tmp", true);
    scan(fs::temp_directory_path(), false);
    for (const char* service : {"kiln-api", "nginx"}) {
        if (!pids_.count(service)) continue;
        std::error_code ec;
        auto cwd = fs::read_symlink("/proc/" + std::to_string(pids_[service]) + "/cwd", ec);
        if (!ec) scan(cwd, false);
    }
    std::set<fs::path> unexpected;
    for (const auto& p : found) {
        if (!expected.count(p)) unexpected.insert(p);
    }
    // The scan sees the storage root: it found every stored file named with the marker.
    for (const auto& p : expected) {
        if (p.filename().string().find(marker) == std::string::npos) continue;
        EXPECT_TRUE(std::find(found.begin(), found.end(), p) != found.end()) << p;
    }
    EXPECT_TRUE(unexpected.empty())
        << "file written outside sources/{job}: " << *unexpected.begin();
}

// File names that are not UTF-8 (Latin-1 bytes, \xff\xfe, lone continuation bytes, an overlong
// "/" as \xc0\xaf, CESU-8 surrogates, a code point above U+10FFFF), raw in filename= or
// percent-encoded in filename*: the job is created, the response is valid UTF-8 JSON (a strict
// parser accepts it), the stored name is a sanitised plain component, and original_name is valid
// UTF-8 too.
TEST_F(Hostile, NonUtf8FileNamesGiveValidUtf8JsonAndSanitisedNames) {
    const std::string png = read_file(media::png());
    struct Case {
        std::string disposition;
        std::string stored;
    };
    const std::vector<Case> cases = {
        {"; filename=\"\xff\xfe.png\"", "png"},
        {"; filename=\"caf\xe9 cr\xe8me.png\"", "caf_crme.png"},
        {"; filename=\"\x80\x81\xbf\xfe\xff\"", "file"},
        {"; filename=\"..\xc0\xaf..\xc0\xaf"
         "etc\xc0\xafpasswd.png\"",
         "etcpasswd.png"},
        {"; filename=\"\xed\xa0\x80\xed\xb0\x80.png\"", "png"},
        {"; filename=\"\xf4\x90\x80\x80.png\"", "png"},  // above U+10FFFF
        {"; filename*=UTF-8''%FF%FEsecret.png", "secret.png"},
        {"; filename*=UTF-8''%C3%A9t%C3%A9.png", "\xc3\xa9t\xc3\xa9.png"},
        // Valid UTF-8 whose cut to the 1024-byte original_name limit falls inside a character.
        {"; filename=\"" + std::string(1023, 'n') + "\xc3\xa9.png\"", ""},
    };
    std::vector<std::string> ids;
    for (const auto& c : cases) {
        SCOPED_TRACE(nlohmann::json(c.disposition.substr(0, 80))
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        const auto before = snapshot();
        const std::string body = multipart::field("type", "image.thumbnails") +
                                 multipart::file_head(c.disposition, "image/png") + png + "\r\n" +
                                 multipart::closing();
        auto r = client.send("POST", "/api/v1/jobs", body,
                             {"Content-Type: " + multipart::content_type()});
        EXPECT_EQ(r.status, 201) << r.body;
        if (r.status != 201) {
            expect_nothing_kept(before);
            continue;
        }
        nlohmann::json json;
        ASSERT_NO_THROW(json = nlohmann::json::parse(r.body)) << "invalid UTF-8 in the response";
        ids.push_back(json["id"]);
        const std::string name = json["sources"][0]["name"];
        if (!c.stored.empty()) {
            EXPECT_EQ(name, c.stored);
        }
        EXPECT_TRUE(plain_component(name)) << name;
        EXPECT_EQ(name.find('\xff'), std::string::npos);
        EXPECT_TRUE(valid_utf8(json["sources"][0]["original_name"].get<std::string>()));
        // The listing reads the same row back from the database.
        auto again = client.get("/api/v1/jobs/" + json["id"].get<std::string>());
        ASSERT_EQ(again.status, 200) << again.body;
        EXPECT_TRUE(nlohmann::json::accept(again.body)) << "invalid UTF-8 in GET /jobs/{id}";
    }
    settle(ids);
}

// ---- Types decided by content ------------------------------------------------------------------

// A PNG named clip.mp4 and declared video/mp4 is typed by its bytes: image.thumbnails takes it
// (content_type image/png, served as image/png) and converts it; video.transcode refuses it
// (errors_test). The reverse, an MP4 named photo.png and declared image/png, is 415 for
// image.thumbnails with the detected type.
TEST_F(Hostile, PngRenamedMp4IsTypedByItsBytesEitherWay) {
    auto r = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "image.thumbnails"}, {"file", "", media::png(), "clip.mp4", "video/mp4"}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["sources"][0]["content_type"], "image/png");
    EXPECT_EQ(r.json()["sources"][0]["name"], "clip.mp4");
    const std::string id = r.json()["id"];
    HttpResult dl;
    download_source(id, "clip.mp4", &dl);
    EXPECT_EQ(dl.header("content-type"), "image/png");
    EXPECT_EQ(dl.header("x-content-type-options"), "nosniff");
    auto w = watch_job(client, id, 60s);
    EXPECT_EQ(w.job["status"], "completed") << w.job.dump();

    const auto before = snapshot();
    auto reverse = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "image.thumbnails"}, {"file", "", media::mp4(), "photo.png", "image/png"}});
    expect_problem(reverse, 415, "unsupported_media_type");
    EXPECT_EQ(reverse.json()["detected_type"], "video/mp4");
    expect_nothing_kept(before);
}

// A file that is a valid PNG, then an HTML page with a script, then a ZIP archive whose offsets
// make the whole file a valid ZIP too. libmagic reads the head: image/png. video.transcode
// refuses it (415, detected image/png); image.thumbnails takes it and the job ends, completed
// (the decoder stops at IEND) or failed with a reason, never hanging; the stored copy is served
// as image/png with nosniff, so a browser never runs the HTML.
TEST_F(Hostile, PolyglotPngHtmlZipIsTypedByItsHeadAndNeverHangs) {
    const std::string png = read_file(media::png());
    const std::string html = "<html><body><script>alert(document.domain)</script></body></html>\n";
    const std::string zip = zip_with_one_file(png.size() + html.size(), "payload.sh",
                                              "#!/bin/sh\necho pwned > /tmp/pwned\n");
    const std::string polyglot = png + html + zip;
    auto file = write_scratch("polyglot.png", polyglot);

    const auto before = snapshot();
    auto video =
        client.post_multipart("/api/v1/jobs", {{"type", "video.transcode"}, {"file", "", file}});
    expect_problem(video, 415, "unsupported_media_type");
    EXPECT_EQ(video.json()["detected_type"], "image/png");
    expect_nothing_kept(before);

    auto r = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "image.thumbnails"}, {"file", "", file, "polyglot.html", "text/html"}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["sources"][0]["content_type"], "image/png");
    EXPECT_EQ(r.json()["sources"][0]["sha256"], util::sha256_hex(polyglot));
    const std::string id = r.json()["id"];
    HttpResult dl;
    EXPECT_EQ(download_source(id, "polyglot.html", &dl), polyglot);
    EXPECT_EQ(dl.header("content-type"), "image/png");
    EXPECT_EQ(dl.header("x-content-type-options"), "nosniff");

    auto w = watch_job(client, id, 120s);
    const std::string status = w.job["status"];
    EXPECT_TRUE(status == "completed" || status == "failed") << w.job.dump();
    if (status == "failed") {
        EXPECT_TRUE(w.job["error"].is_string() && !w.job["error"].get<std::string>().empty())
            << w.job.dump();
    }
    RecordProperty("polyglot_job_status", status);
}

// A 1 KiB PNG declaring 100000 x 100000 (10^10 pixels, 30 GB decoded) and one declaring the PNG
// maximum 2^31-1 squared: image.thumbnails has max_pixels = 10^8, which the worker checks from
// the header (vipsheader) before any decoding. Both jobs fail on their first attempt (the
// failure is permanent) within 60 s, with an error naming the size or the limit.
TEST_F(Hostile, ImageBombFailsOnThePixelLimitInBoundedTime) {
    for (auto [w, h] :
         {std::pair<std::uint32_t, std::uint32_t>{100000, 100000}, {0x7fffffffu, 0x7fffffffu}}) {
        SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h));
        const std::string bomb = image_bomb_png(w, h);
        ASSERT_LT(bomb.size(), 2048u);
        auto file = write_scratch("bomb-" + std::to_string(w) + ".png", bomb);
        auto r = client.post_multipart("/api/v1/jobs",
                                       {{"type", "image.thumbnails"}, {"file", "", file}});
        // Accepted at upload: it is a PNG, and kiln-api does not decode images.
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(r.json()["sources"][0]["content_type"], "image/png");
        const auto started = std::chrono::steady_clock::now();
        auto watched = watch_job(client, r.json()["id"], 60s);
        const double took =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        RecordProperty("bomb_" + std::to_string(w) + "_seconds", std::to_string(took));
        ASSERT_EQ(watched.job["status"], "failed") << watched.job.dump();
        EXPECT_LT(took, 60.0);
        EXPECT_EQ(watched.job["attempts"], 1) << watched.job.dump();
        const std::string error = watched.job["error"].is_string() ? watched.job["error"] : "";
        // 100000^2 is refused by the max_pixels check; 2^31-1 is past what libpng reads at all
        // (1,000,000 per side), so vipsheader itself fails on it.
        const bool names_limit =
            error.find("pixel") != std::string::npos ||
            error.find(std::to_string(w)) != std::string::npos ||
            (w > 1000000 && error.find("not a readable image") != std::string::npos);
        EXPECT_TRUE(names_limit) << error;
        EXPECT_NE(error.find("not retried"), std::string::npos) << error;
        EXPECT_TRUE(watched.job["results"].empty()) << watched.job.dump();
    }
}

// ---- JSON params ------------------------------------------------------------------------------

// Nesting far beyond the 16 levels kiln accepts, as a multipart field (up to max_field_bytes)
// and as a JSON request body (up to max_json_body_bytes), arrays and objects: 400 before the
// text reaches the JSON parser, quickly. (errors_test covers 20 levels.)
TEST_F(Hostile, DeeplyNestedJsonParamsAre400) {
    const auto before = snapshot();
    const int deep = 30000;
    const std::string arrays = std::string(deep, '[') + std::string(deep, ']');
    std::string objects;
    for (int i = 0; i < 5000; ++i) objects += "{\"a\":";
    objects += "1" + std::string(5000, '}');
    const std::string unbalanced = std::string(deep, '[');  // never closed

    for (const std::string* params :
         std::vector<const std::string*>{&arrays, &objects, &unbalanced}) {
        SCOPED_TRACE(params->size());
        const auto started = std::chrono::steady_clock::now();
        auto r = client.post_multipart(
            "/api/v1/jobs",
            {{"type", "image.thumbnails"}, {"params", *params}, {"file", "", media::png()}});
        expect_problem(r, 400, "invalid_request");
        EXPECT_NE(r.json().value("detail", "").find("nests deeper"), std::string::npos) << r.body;

        auto j = client.post_json("/api/v1/jobs",
                                  "{\"type\":\"test.noop\",\"params\":{\"x\":" + *params + "}}");
        expect_problem(j, 400, "invalid_request");
        EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
    }
    // The whole body nested 100,000 deep (200 KB, under the 256 KiB JSON body limit).
    auto body =
        client.post_json("/api/v1/jobs", std::string(100000, '[') + std::string(100000, ']'));
    expect_problem(body, 400, "invalid_request");
    expect_nothing_kept(before);
}

// A header kiln-api reads, given twice with different values: nginx passes both on and a proxy
// in front may read the other one, so neither is taken. The same header once is served.
TEST_F(Hostile, ARepeatedIdempotencyKeyOrContentTypeIs400AndKeepsNothing) {
    const auto before = snapshot();
    const std::string json = R"({"type":"test.noop"})";
    const std::string key = "hostile-" + util::sha256_hex(util::random_bytes(8)).substr(0, 16);
    auto keys = client.send("POST", "/api/v1/jobs", json,
                            {"Content-Type: application/json", "Idempotency-Key: " + key + "a",
                             "Idempotency-Key: " + key});
    expect_problem(keys, 400, "invalid_request");
    EXPECT_NE(keys.json().value("detail", "").find("Idempotency-Key"), std::string::npos)
        << keys.body;
    auto types = client.send("POST", "/api/v1/jobs", json,
                             {"Content-Type: application/json", "Content-Type: text/plain"});
    expect_problem(types, 400, "invalid_request");
    EXPECT_NE(types.json().value("detail", "").find("Content-Type"), std::string::npos)
        << types.body;
    expect_nothing_kept(before);

    auto once = client.send("POST", "/api/v1/jobs", json,
                            {"Content-Type: application/json", "Idempotency-Key: " + key});
    EXPECT_EQ(once.status, 201) << once.body;
    settle({once.json().value("id", "")});
}

// Integer params just past the int64/uint64 edges and 2^32 + a valid value (a cast to 32 bits
// would turn 4294967378 into 82): each is 400 naming the allowed range; none wraps into it.
// Floats equal to a valid integer are not integers. The edges of the range itself pass.
TEST_F(Hostile, IntegersOutOfRangeAre400AndNeverWrap) {
    struct Case {
        const char* value;
        bool out_of_sleep_ms_range;  // test.noop's sleep_ms is 0..60000
    };
    for (const auto& [value, for_sleep_ms] : std::vector<Case>{{"4294967378", true},
                                                               {"18446744073709551698", true},
                                                               {"18446744073709551616", true},
                                                               {"9223372036854775808", true},
                                                               {"9223372036854775890", true},
                                                               {"-9223372036854775808", true},
                                                               {"-9223372036854775809", true},
                                                               {"-18446744073709551534", true},
                                                               {"1e400", true},
                                                               {"-1e400", true},
                                                               {"82.0", true},
                                                               {"8.2e1", true},
                                                               {"49", false},
                                                               {"96", false},
                                                               {"-82", true},
                                                               {"true", true},
                                                               {"null", true},
                                                               {"[82]", true},
                                                               {"{\"v\":82}", true}}) {
        SCOPED_TRACE(value);
        const auto before = snapshot();
        auto r = client.post_multipart("/api/v1/jobs",
                                       {{"type", "image.thumbnails"},
                                        {"params", std::string("{\"quality\":") + value + "}"},
                                        {"file", "", media::png()}});
        expect_problem(r, 400, "invalid_request");
        // The range is named, unless the number is not even JSON (1e400 overflows a double).
        const std::string detail = r.json().value("detail", "");
        EXPECT_TRUE(detail.find("50 to 95") != std::string::npos ||
                    detail.find("not valid JSON") != std::string::npos)
            << r.body;
        if (for_sleep_ms) {
            // The same through a JSON body, on a converter without files.
            auto j = client.post_json(
                "/api/v1/jobs",
                std::string("{\"type\":\"test.noop\",\"params\":{\"sleep_ms\":") + value + "}}");
            expect_problem(j, 400, "invalid_request");
        }
        expect_nothing_kept(before);
    }
    std::vector<std::string> ids;
    for (const char* edge : {"50", "95"}) {
        auto r = client.post_multipart("/api/v1/jobs",
                                       {{"type", "image.thumbnails"},
                                        {"params", std::string("{\"quality\":") + edge + "}"},
                                        {"file", "", media::png()}});
        EXPECT_EQ(r.status, 201) << edge << ": " << r.body;
        EXPECT_EQ(r.json()["params"]["quality"], std::stoi(edge));
        ids.push_back(r.json().value("id", ""));
    }
    settle(ids);
}

}  // namespace
}  // namespace kiln::test
