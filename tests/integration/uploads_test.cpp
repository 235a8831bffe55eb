// Streaming uploads: bounded memory, clients that go away, hostile file names.

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "core/util/crypto.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/multipart.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class Uploads : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();

    // After a client went away mid-upload: kiln-api notices once nginx closes the FastCGI
    // stream, removes the staged files and records nothing; the service is still there.
    void expect_nothing_kept(std::int64_t rows_before, std::size_t sources_before) const {
        bool clean = false;
        for (int i = 0; i < 100 && !clean; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            clean = stack.staged_upload_files().empty();
        }
        EXPECT_TRUE(clean) << "staging files remain";
        EXPECT_EQ(stack.job_rows(), rows_before);
        EXPECT_EQ(stack.files_in("sources").size(), sources_before);
        EXPECT_EQ(client.get("/api/v1/types").status, 200);
    }
};

TEST_F(Uploads, A300MegabyteUploadKeepsKilnApiUnder64MiBResident) {
#ifdef KILN_SANITIZED
    // ASan's shadow memory and quarantine make RSS say nothing about kiln's own buffering.
    GTEST_SKIP() << "RSS bound not meaningful under AddressSanitizer";
#endif
    constexpr std::uint64_t size = 300ull * 1024 * 1024;
    // A real MP4 followed by zeros: libmagic still sees video/mp4 from the head.
    auto big = make_file("big.mp4", read_file(media::mp4()), size);
    // Peak RSS is counted from here: earlier tests' requests are not this upload's doing.
    reset_peak_rss(stack.api_pid());
    const auto before = peak_rss_bytes(stack.api_pid());  // what earlier requests left resident
    auto r =
        client.post_multipart("/api/v1/jobs", {{"type", "video.transcode"}, {"file", "", big}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["sources"][0]["size"], size);
    EXPECT_EQ(r.json()["sources"][0]["content_type"], "video/mp4");
    const auto peak = peak_rss_bytes(stack.api_pid());
    RecordProperty("kiln_api_peak_rss_bytes", std::to_string(peak));
    EXPECT_LT(peak, 64ull * 1024 * 1024) << "peak RSS " << peak << ", resident before " << before;
    std::filesystem::remove(big);
}

TEST_F(Uploads, AClientThatDisconnectsMidUploadLeavesNoRowAndNoFile) {
    const auto rows = stack.job_rows();
    const auto sources = stack.files_in("sources").size();
    const std::string boundary = "kilnboundary";
    std::string head =
        "--" + boundary +
        "\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nvideo.transcode\r\n"
        "--" +
        boundary +
        "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.mp4\"\r\n"
        "Content-Type: video/mp4\r\n\r\n" +
        read_file(media::mp4());
    std::string request =
        "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
        stack.admin_token + "\r\nContent-Type: multipart/form-data; boundary=" + boundary +
        "\r\nContent-Length: " + std::to_string(head.size() + 50'000'000) + "\r\n\r\n" + head +
        std::string(2'000'000, 'x');
    raw_http(stack.url, request, /*close_early=*/true);
    expect_nothing_kept(rows, sources);
}

// Clients that stream a body of unknown size (curl -T -, HTTP libraries given a generator) send
// it chunked: nginx passes it through unbuffered and without a length.
TEST_F(Uploads, AChunkedUploadIsStoredWhole) {
    const std::string png = read_file(media::png());
    auto r =
        client.send("POST", "/api/v1/jobs", multipart::upload("image.thumbnails", "c.png", png),
                    {"Content-Type: " + multipart::content_type(), "Transfer-Encoding: chunked"});
    ASSERT_EQ(r.status, 201) << r.body;
    const auto& source = r.json()["sources"][0];
    EXPECT_EQ(source["size"], png.size());
    EXPECT_EQ(source["sha256"], util::sha256_hex(png));
    const std::string id = r.json()["id"];
    EXPECT_EQ(read_file(stack.config.storage_root / "sources" / id / "c.png"), png);

    auto json = client.send("POST", "/api/v1/jobs", R"({"type":"test.noop"})",
                            {"Content-Type: application/json", "Transfer-Encoding: chunked"});
    EXPECT_EQ(json.status, 201) << json.body;
    EXPECT_EQ(json.json()["type"], "test.noop");
}

TEST_F(Uploads, AClientThatDisconnectsMidChunkedUploadLeavesNoRowAndNoFile) {
    const auto rows = stack.job_rows();
    const auto sources = stack.files_in("sources").size();
    const std::string body = multipart::field("type", "video.transcode") +
                             multipart::file_head("; filename=\"cut.mp4\"", "video/mp4") +
                             read_file(media::mp4());
    std::ostringstream chunk;
    chunk << std::hex << body.size() << "\r\n" << body << "\r\n";
    std::string request =
        "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
        stack.admin_token + "\r\nContent-Type: " + multipart::content_type() +
        "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk.str();
    raw_http(stack.url, request, /*close_early=*/true);
    expect_nothing_kept(rows, sources);
}

TEST_F(Uploads, HostileFileNamesAreSanitisedAndKeptAsMetadata) {
    struct Case {
        std::string sent;
        std::string stored;
    };
    const std::vector<Case> cases = {
        {"../../etc/passwd.png", "passwd.png"},
        {"..\\..\\windows\\win.ini.png", "win.ini.png"},
        {".hidden.png", "hidden.png"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.sent);
        auto r = client.post_multipart(
            "/api/v1/jobs", {{"type", "image.thumbnails"}, {"file", "", media::png(), c.sent}});
        ASSERT_EQ(r.status, 201) << r.body;
        const auto& src = r.json()["sources"][0];
        EXPECT_EQ(src["name"], c.stored);
        EXPECT_EQ(src["original_name"], c.sent);
        const std::string id = r.json()["id"];
        EXPECT_TRUE(std::filesystem::exists(stack.config.storage_root / "sources" / id /
                                            src["name"].get<std::string>()));
    }
}

TEST_F(Uploads, SameNameTwiceInOneJobGetsUniqueNames) {
    std::vector<Part> parts = {{"type", "test.noop"},
                               {"file", "", media::png(), "same.png"},
                               {"file", "", media::png(), "same.png"}};
    auto r = client.post_multipart("/api/v1/jobs", parts);
    ASSERT_EQ(r.status, 201) << r.body;
    auto sources = r.json()["sources"];
    ASSERT_EQ(sources.size(), 2u);
    EXPECT_NE(sources[0]["name"], sources[1]["name"]);
}

}  // namespace
}  // namespace kiln::test
