// Every error a client can provoke is an RFC 9457 problem with a stable code, and none of them
// leaves a job row or a stored file behind.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <vector>

#include "core/db/mariadb.hpp"
#include "core/util/crypto.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class Errors : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();

    // Checks the problem shape and that the request left nothing behind.
    void expect_problem_and_nothing_kept(const HttpResult& r, long status, const std::string& code,
                                         std::int64_t rows_before, std::size_t sources_before) {
        EXPECT_EQ(r.status, status) << r.body;
        EXPECT_EQ(r.header("content-type"), "application/problem+json");
        auto body = r.json();
        ASSERT_TRUE(body.is_object()) << r.body;
        EXPECT_EQ(body["code"], code);
        EXPECT_EQ(body["status"], status);
        EXPECT_TRUE(body["title"].is_string());
        EXPECT_EQ(stack.job_rows(), rows_before);
        EXPECT_EQ(stack.files_in("sources").size(), sources_before);
        EXPECT_TRUE(stack.staged_upload_files().empty());
    }
};

TEST_F(Errors, MissingTokenIs401) {
    auto r = Client(stack.url, "").get("/api/v1/jobs");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.code(), "unauthorized");
}

TEST_F(Errors, UnknownTokenIs401) {
    auto r = client.with_token("kiln_not-a-real-token").get("/api/v1/types");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.code(), "unauthorized");
}

TEST_F(Errors, RevokedTokenIs401AtOnce) {
    std::string token = stack.create_token("revokee");
    Client c = client.with_token(token);
    auto created = c.post_json("/api/v1/jobs", R"({"type":"test.noop"})");
    ASSERT_EQ(created.status, 201) << created.body;
    const std::string job = "/api/v1/jobs/" + created.json()["id"].get<std::string>();
    ASSERT_EQ(c.get("/api/v1/jobs").status, 200);
    ASSERT_EQ(c.get(job).status, 200);
    run_command(
        {stack.kilnctl.string(), "--config", stack.config_path.string(), "token", "revoke", token});
    EXPECT_EQ(c.get("/api/v1/jobs").status, 401);
    // GET job reads its token in the same statement as the job.
    auto r = c.get(job);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.code(), "unauthorized");
}

// A token is stored as its SHA-256 only: a copy of the tokens table (a backup, a replica) lets
// nobody call the API.
TEST_F(Errors, TokensAreStoredAsTheirSha256Only) {
    const std::string owner = "hashed-" + std::to_string(::getpid());
    const std::string token = stack.create_token(owner);
    ASSERT_FALSE(token.empty());
    auto conn = db::Connection::open(stack.config.database);
    ASSERT_TRUE(conn) << conn.error().describe();
    auto mine = (*conn)->query("SELECT token_sha256 FROM tokens WHERE owner = ?", {owner});
    ASSERT_TRUE(mine && mine->size() == 1);
    EXPECT_EQ(mine->front().text(0), util::sha256_hex(token));
    auto rows = (*conn)->query(
        "SELECT CONCAT_WS('|', id, token_sha256, owner, is_admin, created_at, revoked_at) "
        "FROM tokens");
    ASSERT_TRUE(rows) << rows.error().describe();
    const std::string secret = token.substr(token.find('_') + 1);  // without the kiln_ prefix
    for (const auto& row : *rows) {
        EXPECT_EQ(row.text(0).find(secret), std::string::npos) << row.text(0);
    }
}

// A request refused before its body was read must not break the next request nginx sends on
// the same pooled connection: nginx does not retry a POST, so its client would get a 503.
TEST_F(Errors, AnUploadRefusedBeforeItsBodyLeavesTheNextPostServed) {
    const Client stranger = client.with_token("kiln_not-a-real-token");
    std::atomic<int> unserved = 0;
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
        clients.emplace_back([&] {
            for (int i = 0; i < 100; ++i) {
                auto refused = stranger.post_multipart(
                    "/api/v1/jobs", {{"type", "image.thumbnails"}, {"file", "", media::png()}});
                if (refused.status != 401) ++unserved;
                auto next = client.post_json("/api/v1/jobs/AAAAAAAAAAAAAAAAAAAAAAAAAA/cancel", "");
                if (next.status != 404) ++unserved;
            }
        });
    }
    for (auto& c : clients) c.join();
    EXPECT_EQ(unserved.load(), 0);
}

TEST_F(Errors, AnUnknownTokenIs401ForAJobThatExistsOrNot) {
    auto created = client.post_json("/api/v1/jobs", R"({"type":"test.noop"})");
    ASSERT_EQ(created.status, 201) << created.body;
    Client stranger = client.with_token("kiln_not-a-real-token");
    for (const std::string& id : {created.json()["id"].get<std::string>(), util::new_job_id(),
                                  std::string("not-an-id"), std::string("%C3%A9")}) {
        SCOPED_TRACE(id);
        auto r = stranger.get("/api/v1/jobs/" + id);
        EXPECT_EQ(r.status, 401) << r.body;
        EXPECT_EQ(r.code(), "unauthorized");
    }
}

TEST_F(Errors, UnknownJobIs404) {
    auto r = client.get("/api/v1/jobs/" + util::new_job_id());
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.code(), "not_found");
    EXPECT_EQ(client.get("/api/v1/jobs/../../etc/passwd").status, 404);
    EXPECT_EQ(client.get("/api/v1/nothing").status, 404);
}

TEST_F(Errors, IdsAndFiltersOutsideTheirAlphabetAre404And400NeverUnavailable) {
    // 26 bytes, as many as an id has, that are not base32 (nginx decodes the %C3%A9): MariaDB
    // refuses to compare them with the ASCII id column, which used to answer 503.
    const std::string odd = "%C3%A9" + std::string(24, 'a');
    for (const std::string suffix : {"", "/sources", "/results", "/logs", "/logs/x.log"}) {
        auto r = client.get("/api/v1/jobs/" + odd + suffix);
        EXPECT_EQ(r.status, 404) << suffix << " " << r.body;
    }
    for (const std::string action : {"/cancel", "/retry"}) {
        auto r = client.send("POST", "/api/v1/jobs/" + odd + action, "");
        EXPECT_EQ(r.status, 404) << action << " " << r.body;
    }
    auto type = client.get("/api/v1/jobs?type=%C3%A9");
    EXPECT_EQ(type.status, 400) << type.body;
    EXPECT_EQ(type.code(), "invalid_request");
}

TEST_F(Errors, WrongMethodIs405WithAllow) {
    auto r = client.send("DELETE", "/api/v1/jobs", "");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.code(), "method_not_allowed");
    EXPECT_NE(r.header("allow").find("POST"), std::string::npos);
}

TEST_F(Errors, PostWithoutContentLengthIs411) {
    // (A chunked body has no length either, but an end: it is served, see uploads_test.)
    std::string reply = raw_http(
        stack.url,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\n"
        "Authorization: Bearer " +
            stack.admin_token + "\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 411", 0), 0u) << reply;
    EXPECT_NE(reply.find("\"code\":\"length_required\""), std::string::npos) << reply;
}

TEST_F(Errors, MalformedMultipartIs400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.send("POST", "/api/v1/jobs",
                         "--XYZ\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n"
                         "image.thumbnails\r\n--XYZ\r\nContent-Disposition: form-data; "
                         "name=\"file\"; filename=\"a.png\"\r\n\r\nPNGDATA",  // no closing boundary
                         {"Content-Type: multipart/form-data; boundary=XYZ"});
    expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
}

TEST_F(Errors, MalformedJsonIs400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_json("/api/v1/jobs", "{\"type\": ");
    expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
    // A member of the wrong kind is named as such, not as an unexpected member.
    auto number = client.post_json("/api/v1/jobs", R"({"type":5})");
    expect_problem_and_nothing_kept(number, 400, "invalid_request", rows, files);
    EXPECT_NE(number.body.find("'type' must be a string"), std::string::npos) << number.body;
    auto twice = client.post_json("/api/v1/jobs", R"({"type":"test.noop","type":"test.fail"})");
    expect_problem_and_nothing_kept(twice, 400, "invalid_request", rows, files);
    // An escaped NUL is refused like a raw one, and not echoed back as an unknown type.
    auto nul = client.post_json("/api/v1/jobs", R"({"type":"test.noop\u0000"})");
    expect_problem_and_nothing_kept(nul, 400, "invalid_request", rows, files);
}

TEST_F(Errors, MissingTypeIs400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_multipart("/api/v1/jobs", {{"file", "", media::png()}});
    expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
}

TEST_F(Errors, ParamsOutsideTheirAllowedValuesAre400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    for (const char* params : {R"({"format":"avi"})", R"({"height":100000})", R"({"height":"720"})",
                               R"({"shell":"rm -rf /"})", R"([1,2])",
                               R"({"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]})"}) {
        auto r = client.post_multipart(
            "/api/v1/jobs",
            {{"type", "video.transcode"}, {"params", params}, {"file", "", media::mp4()}});
        SCOPED_TRACE(params);
        expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
    }
}

TEST_F(Errors, BadPriorityIs400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "image.thumbnails"}, {"priority", "urgent"}, {"file", "", media::png()}});
    expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
}

TEST_F(Errors, EmptyFileIs400) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto empty = make_file("empty.png", "", 0);
    auto r =
        client.post_multipart("/api/v1/jobs", {{"type", "image.thumbnails"}, {"file", "", empty}});
    expect_problem_and_nothing_kept(r, 400, "invalid_request", rows, files);
}

TEST_F(Errors, TooManyFilesIs413) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "image.thumbnails"}, {"a", "", media::png()}, {"b", "", media::png()}});
    expect_problem_and_nothing_kept(r, 413, "payload_too_large", rows, files);
}

TEST_F(Errors, FileOverTheConvertersLimitIs413) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    std::uint64_t limit = 0;
    auto types = client.get("/api/v1/types");
    for (const auto& t : types.json()["types"]) {
        if (t["name"] == "image.thumbnails") limit = t["max_upload_bytes"];
    }
    ASSERT_GT(limit, 0u);
    std::ifstream png(media::png(), std::ios::binary);
    std::string head((std::istreambuf_iterator<char>(png)), std::istreambuf_iterator<char>());
    auto big = make_file("big.png", head, limit + 1);
    auto r =
        client.post_multipart("/api/v1/jobs", {{"type", "image.thumbnails"}, {"file", "", big}});
    expect_problem_and_nothing_kept(r, 413, "payload_too_large", rows, files);
}

TEST_F(Errors, OversizedPartHeaderIs413) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    std::string body = "--XYZ\r\nContent-Disposition: form-data; name=\"type\"\r\nX-Padding: " +
                       std::string(64 * 1024, 'a') + "\r\n\r\nimage.thumbnails\r\n--XYZ--\r\n";
    auto r = client.send("POST", "/api/v1/jobs", body,
                         {"Content-Type: multipart/form-data; boundary=XYZ"});
    expect_problem_and_nothing_kept(r, 413, "payload_too_large", rows, files);
}

TEST_F(Errors, PngRenamedMp4Is415WithTheDetectedType) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_multipart(
        "/api/v1/jobs",
        {{"type", "video.transcode"}, {"file", "", media::png(), "movie.mp4", "video/mp4"}});
    expect_problem_and_nothing_kept(r, 415, "unsupported_media_type", rows, files);
    EXPECT_EQ(r.json()["detected_type"], "image/png");
}

TEST_F(Errors, WrongRequestContentTypeIs415) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.send("POST", "/api/v1/jobs", "type=image.thumbnails",
                         {"Content-Type: application/x-www-form-urlencoded"});
    expect_problem_and_nothing_kept(r, 415, "unsupported_media_type", rows, files);
    // The media type is matched whole (not as a prefix), and JSON is read as UTF-8 only.
    const std::string json = R"({"type":"test.noop"})";
    for (const char* type : {"application/jsonx", "application/json; charset=utf-16"}) {
        auto refused =
            client.send("POST", "/api/v1/jobs", json, {std::string("Content-Type: ") + type});
        SCOPED_TRACE(type);
        expect_problem_and_nothing_kept(refused, 415, "unsupported_media_type", rows, files);
    }
    auto no_boundary =
        client.send("POST", "/api/v1/jobs", "x", {"Content-Type: Multipart/Form-Data"});
    expect_problem_and_nothing_kept(no_boundary, 400, "invalid_request", rows, files);
}

TEST_F(Errors, MediaTypesAreCaseInsensitive) {
    auto r = client.send("POST", "/api/v1/jobs", R"({"type":"test.noop"})",
                         {"Content-Type: Application/JSON; Charset=\"UTF-8\""});
    EXPECT_EQ(r.status, 201) << r.body;
}

TEST_F(Errors, UnknownTypeIs422) {
    const auto rows = stack.job_rows();
    const auto files = stack.files_in("sources").size();
    auto r = client.post_multipart("/api/v1/jobs",
                                   {{"type", "video.explode"}, {"file", "", media::mp4()}});
    expect_problem_and_nothing_kept(r, 422, "unknown_type", rows, files);
}

// What raw_http read: the status line's code, the header block and the body.
struct RawReply {
    int status = 0;
    std::string head;
    std::string body;
};

RawReply parse_reply(const std::string& reply) {
    RawReply r;
    if (reply.rfind("HTTP/1.1 ", 0) == 0) r.status = std::atoi(reply.c_str() + 9);
    const auto end = reply.find("\r\n\r\n");
    r.head = reply.substr(0, end);
    if (end != std::string::npos) r.body = reply.substr(end + 4);
    return r;
}

// Requests nginx refuses before (or instead of) kiln-api still get a problem document, not
// nginx's HTML page.
TEST_F(Errors, ErrorsNginxAnswersItselfAreProblems) {
    struct Case {
        std::string what;
        std::string request;
        int status;
        std::string code;
    };
    const std::string auth = "Authorization: Bearer " + stack.admin_token + "\r\n";
    const std::string end = "Host: localhost\r\nConnection: close\r\n\r\n";
    const std::vector<Case> cases = {
        {"unparsable request line", "GARBAGE\r\n\r\n", 400, "invalid_request"},
        {"NUL in the path", "GET /api/v1/jobs/a%00b HTTP/1.1\r\n" + auth + end, 400,
         "invalid_request"},
        {"header line over 8 KiB",
         "GET /api/v1/types HTTP/1.1\r\nX-Big: " + std::string(9000, 'a') + "\r\n" + auth + end,
         400, "invalid_request"},
        {"URI over 8 KiB", "GET /api/v1/jobs/" + std::string(9000, 'a') + " HTTP/1.1\r\n" + end,
         414, "uri_too_long"},
        {"TRACE on the API", "TRACE /api/v1/jobs HTTP/1.1\r\n" + auth + end, 405,
         "method_not_allowed"},
        {"TRACE on the dashboard", "TRACE / HTTP/1.1\r\n" + end, 405, "method_not_allowed"},
        {"POST to a static file", "POST /index.html HTTP/1.1\r\nContent-Length: 1\r\n" + end + "x",
         405, "method_not_allowed"},
        {"missing static file", "GET /no-such-file.css HTTP/1.1\r\n" + end, 404, "not_found"},
        {"unknown transfer coding",
         "POST /api/v1/jobs HTTP/1.1\r\nTransfer-Encoding: gzip\r\n" + auth + end, 501,
         "not_implemented"},
        {"HTTP/2.0 in the request line", "GET /api/v1/jobs HTTP/2.0\r\n" + auth + end, 505,
         "http_version_not_supported"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        const RawReply reply = parse_reply(raw_http(stack.url, c.request));
        EXPECT_EQ(reply.status, c.status) << reply.head;
        EXPECT_NE(reply.head.find("Content-Type: application/problem+json"), std::string::npos)
            << reply.head;
        const auto body = nlohmann::json::parse(reply.body, nullptr, false);
        ASSERT_TRUE(body.is_object()) << reply.body;
        EXPECT_EQ(body["code"], c.code);
        EXPECT_EQ(body["status"], c.status);
        if (c.status == 405) {
            EXPECT_NE(reply.head.find("\r\nAllow: GET, HEAD"), std::string::npos);
        }
    }
    // kiln-api knows the API's methods: its Allow header for the TRACE, not nginx's.
    const RawReply trace =
        parse_reply(raw_http(stack.url, "TRACE /api/v1/jobs HTTP/1.1\r\n" + auth + end));
    EXPECT_NE(trace.head.find("\r\nAllow: GET, HEAD, POST"), std::string::npos) << trace.head;
}

TEST_F(Errors, RangeBeyondADownloadsEndIs416WithItsSize) {
    auto created = client.post_multipart(
        "/api/v1/jobs", {{"type", "test.noop"}, {"file", "", media::png(), "r.png"}});
    ASSERT_EQ(created.status, 201) << created.body;
    const std::string id = created.json()["id"];
    const auto size = created.json()["sources"][0]["size"].get<std::uint64_t>();
    auto r = client.send("GET", "/api/v1/jobs/" + id + "/sources/r.png", "",
                         {"Range: bytes=" + std::to_string(size + 10) + "-"});
    EXPECT_EQ(r.status, 416);
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(r.code(), "range_not_satisfiable");
    EXPECT_EQ(r.header("content-range"), "bytes */" + std::to_string(size));
}

}  // namespace
}  // namespace kiln::test
