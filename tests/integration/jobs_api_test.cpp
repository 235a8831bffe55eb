// The job API end to end through nginx: create, read, list, files, downloads, types, health.

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include "core/storage/storage.hpp"
#include "core/util/crypto.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class JobsApi : public ::testing::Test {
  protected:
    const Stack& stack = Stack::get();
    Client client = stack.admin();
};

TEST_F(JobsApi, HealthAnswersOkWhenTheDatabaseIsUp) {
    auto r = Client(stack.url, "").get("/health");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.json()["database"], "ok");
}

TEST_F(JobsApi, TypesListsTheShippedConvertersWithTheirParams) {
    auto r = client.get("/api/v1/types");
    ASSERT_EQ(r.status, 200) << r.body;
    std::set<std::string> names;
    for (const auto& t : r.json()["types"]) names.insert(t["name"].get<std::string>());
    EXPECT_TRUE(names.count("video.transcode"));
    EXPECT_TRUE(names.count("image.thumbnails"));
    for (const auto& t : r.json()["types"]) {
        if (t["name"] == "video.transcode") {
            EXPECT_EQ(t["accepts"], nlohmann::json::array({"video/*"}));
            EXPECT_EQ(t["params"]["format"]["type"], "enum");
            EXPECT_GT(t["max_upload_bytes"].get<std::uint64_t>(), 0u);
        }
    }
}

TEST_F(JobsApi, UploadCreatesAPendingJobWithItsSourceRecorded) {
    auto r = client.post_multipart("/api/v1/jobs", {{"type", "image.thumbnails"},
                                                    {"priority", "premium"},
                                                    {"file", "", media::png(), "holiday.png"}});
    ASSERT_EQ(r.status, 201) << r.body;
    auto job = r.json();
    EXPECT_EQ(job["status"], "pending");
    EXPECT_EQ(job["type"], "image.thumbnails");
    EXPECT_EQ(job["priority"], "premium");
    EXPECT_EQ(job["progress"], 0);
    EXPECT_EQ(job["attempts"], 0);
    EXPECT_TRUE(job["position_in_queue"].is_number_integer());
    EXPECT_EQ(r.header("location"), "/api/v1/jobs/" + job["id"].get<std::string>());
    ASSERT_EQ(job["sources"].size(), 1u);
    const auto& src = job["sources"][0];
    const std::string bytes = read_file(media::png());
    EXPECT_EQ(src["name"], "holiday.png");
    EXPECT_EQ(src["content_type"], "image/png");
    EXPECT_EQ(src["size"], bytes.size());
    EXPECT_EQ(src["sha256"], util::sha256_hex(bytes));
    // Times are RFC 3339 UTC with milliseconds.
    EXPECT_EQ(job["created_at"].get<std::string>().size(), 24u);
    EXPECT_EQ(job["created_at"].get<std::string>().back(), 'Z');

    auto again = client.get("/api/v1/jobs/" + job["id"].get<std::string>());
    ASSERT_EQ(again.status, 200);
    EXPECT_EQ(again.json()["id"], job["id"]);
    EXPECT_EQ(again.json()["sources"], job["sources"]);
}

// curl -F params=@params.json sends the field as a file part: it is still the params field, not an
// upload.
TEST_F(JobsApi, ParamsSentAsAFilePartAreStillTheParamsField) {
    const auto params = scratch_dir() / "params.json";
    std::ofstream(params) << R"({"quality": 60})";
    auto r = client.post_multipart("/api/v1/jobs", {{"type", "image.thumbnails"},
                                                    {"params", "", params, "params.json"},
                                                    {"file", "", media::png(), "holiday.png"}});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["params"], nlohmann::json({{"quality", 60}}));
    ASSERT_EQ(r.json()["sources"].size(), 1u) << r.body;
    EXPECT_EQ(r.json()["sources"][0]["name"], "holiday.png");
}

// The multipart parser's bound on parts follows the converters: one that takes 32 files (more
// than [api] max_parts + 3 parts) gets all 32, and the 33rd is refused with the converter's own
// limit in the message.
TEST_F(JobsApi, AConverterThatTakesMoreFilesThanMaxPartsGetsThemAll) {
    std::vector<Part> parts = {{"type", "test.many"}};
    for (int i = 0; i < 32; ++i) parts.emplace_back("file", "", media::png());
    auto r = client.post_multipart("/api/v1/jobs", parts);
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["sources"].size(), 32u);

    parts.emplace_back("file", "", media::png());
    auto over = client.post_multipart("/api/v1/jobs", parts);
    EXPECT_EQ(over.status, 413) << over.body;
    EXPECT_NE(over.body.find("at most 32"), std::string::npos) << over.body;
}

// A UTF-8 name reaches the browser whole (RFC 8187 filename*), and in the ASCII fallback for
// older clients each non-ASCII character is one '_', not one per byte.
TEST_F(JobsApi, ADownloadNamesAUtf8FileWholeAndInAReadableAsciiFallback) {
    // "Été photo (1).png": stored as "Été_photo__1_.png" (spaces and brackets become '_').
    const std::string name = "\xC3\x89t\xC3\xA9 photo (1).png";
    auto r = client.post_multipart(
        "/api/v1/jobs", {{"type", "image.thumbnails"}, {"file", "", media::png(), name}});
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json()["id"];
    const std::string stored = r.json()["sources"][0]["name"];
    EXPECT_EQ(stored, "\xC3\x89t\xC3\xA9_photo__1_.png");
    auto dl = client.get("/api/v1/jobs/" + id + "/sources/" + storage::percent_encode(stored));
    ASSERT_EQ(dl.status, 200) << dl.body;
    EXPECT_EQ(dl.header("content-disposition"),
              "attachment; filename=\"_t__photo__1_.png\"; "
              "filename*=UTF-8''%C3%89t%C3%A9_photo__1_.png");
}

TEST_F(JobsApi, DownloadThroughXAccelRedirectIsByteIdenticalToTheUpload) {
    auto r = client.post_multipart("/api/v1/jobs",
                                   {{"type", "video.transcode"}, {"file", "", media::mp4()}});
    ASSERT_EQ(r.status, 201) << r.body;
    const std::string id = r.json()["id"];
    auto list = client.get("/api/v1/jobs/" + id + "/sources");
    ASSERT_EQ(list.status, 200);
    ASSERT_EQ(list.json()["sources"].size(), 1u);
    const std::string name = list.json()["sources"][0]["name"];
    EXPECT_EQ(name, "clip.mp4");

    auto dl = client.get("/api/v1/jobs/" + id + "/sources/" + name);
    ASSERT_EQ(dl.status, 200);
    EXPECT_EQ(dl.body, read_file(media::mp4()));
    EXPECT_EQ(dl.header("content-type"), "video/mp4");
    EXPECT_NE(dl.header("content-disposition").find("clip.mp4"), std::string::npos);
    // The internal redirect target never leaks to the client.
    EXPECT_EQ(dl.header("x-accel-redirect"), "");
    // The digest taken when the file was stored reaches the client, also on a range request
    // (it describes the whole file).
    const std::string digest = util::repr_digest_sha256(util::sha256_hex(dl.body));
    EXPECT_EQ(dl.header("repr-digest"), digest);
    auto part =
        client.send("GET", "/api/v1/jobs/" + id + "/sources/" + name, "", {"Range: bytes=0-9"});
    EXPECT_EQ(part.status, 206);
    EXPECT_EQ(part.body, dl.body.substr(0, 10));
    EXPECT_EQ(part.header("repr-digest"), digest);

    auto missing = client.get("/api/v1/jobs/" + id + "/sources/other.mp4");
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(missing.code(), "not_found");
    auto results = client.get("/api/v1/jobs/" + id + "/results");
    ASSERT_EQ(results.status, 200);
    EXPECT_TRUE(results.json()["results"].empty());
}

TEST_F(JobsApi, JsonCreationValidatesAgainstTheConverter) {
    // image.thumbnails needs a file: a JSON body has none.
    auto r = client.post_json("/api/v1/jobs", R"({"type":"image.thumbnails"})");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.code(), "invalid_request");
}

TEST_F(JobsApi, ListIsNewestFirstAndPagesWithAnOpaqueCursor) {
    const std::string owner = "pager-" + util::new_job_id().substr(0, 8);
    Client mine = client.with_token(stack.create_token(owner));
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) {
        auto r = mine.post_multipart("/api/v1/jobs",
                                     {{"type", "image.thumbnails"}, {"file", "", media::jpeg()}});
        ASSERT_EQ(r.status, 201) << r.body;
        ids.push_back(r.json()["id"]);
    }
    std::vector<std::string> seen;
    std::string path = "/api/v1/jobs?limit=2";
    for (int page = 0; page < 5; ++page) {
        auto r = mine.get(path);
        ASSERT_EQ(r.status, 200) << r.body;
        for (const auto& j : r.json()["jobs"]) seen.push_back(j["id"]);
        if (r.json()["next_cursor"].is_null()) break;
        path = "/api/v1/jobs?limit=2&cursor=" + r.json()["next_cursor"].get<std::string>();
    }
    std::vector<std::string> newest_first(ids.rbegin(), ids.rend());
    EXPECT_EQ(seen, newest_first);

    // Nothing cancels jobs here, so that filter matches none of them; workers move the others
    // along, so the type filter is the stable one.
    auto filtered = mine.get("/api/v1/jobs?status=cancelled");
    ASSERT_EQ(filtered.status, 200);
    EXPECT_TRUE(filtered.json()["jobs"].empty());
    auto by_type = mine.get("/api/v1/jobs?type=image.thumbnails&limit=500");
    ASSERT_EQ(by_type.status, 200);
    EXPECT_EQ(by_type.json()["jobs"].size(), 5u);
    auto other_type = mine.get("/api/v1/jobs?type=video.transcode");
    ASSERT_EQ(other_type.status, 200);
    EXPECT_TRUE(other_type.json()["jobs"].empty());
}

TEST_F(JobsApi, ListRejectsBadFilters) {
    EXPECT_EQ(client.get("/api/v1/jobs?limit=0").status, 400);
    EXPECT_EQ(client.get("/api/v1/jobs?limit=501").status, 400);
    EXPECT_EQ(client.get("/api/v1/jobs?status=done").status, 400);
    EXPECT_EQ(client.get("/api/v1/jobs?cursor=garbage!").code(), "invalid_request");
    // Only cursors the server issues: 2^63 is no seq, and "djE6MT" decodes to "v1:1" too, but
    // the server writes that one "djE6MQ".
    const auto too_big = util::base64url_encode("v1:9223372036854775808");
    EXPECT_EQ(client.get("/api/v1/jobs?cursor=" + too_big).status, 400);
    EXPECT_EQ(client.get("/api/v1/jobs?cursor=djE6MT").status, 400);
    EXPECT_EQ(client.get("/api/v1/jobs?cursor=djE6MQ").status, 200);
}

TEST_F(JobsApi, PositionInQueueCountsJobsThatRunFirst) {
    // test.controlled jobs stay pending (only workers that a queue test starts run them), so
    // the positions are read while all three wait. Created batch, standard, premium: they run
    // premium, standard, batch, and each has the ones that run before it ahead of it.
    std::map<std::string, std::string> ids;
    for (const char* priority : {"batch", "standard", "premium"}) {
        auto r = client.post_json(
            "/api/v1/jobs",
            nlohmann::json{{"type", "test.controlled"}, {"priority", priority}}.dump());
        ASSERT_EQ(r.status, 201) << r.body;
        ids[priority] = r.json()["id"];
    }
    std::map<std::string, int> position;
    for (const auto& [priority, id] : ids) {
        auto job = client.get("/api/v1/jobs/" + id).json();
        ASSERT_EQ(job["status"], "pending") << job.dump();
        position[priority] = job["position_in_queue"].get<int>();
    }
    EXPECT_GE(position["standard"], position["premium"] + 1);
    EXPECT_GE(position["batch"], position["standard"] + 1);
    for (const auto& [priority, id] : ids) {
        EXPECT_EQ(client.post_json("/api/v1/jobs/" + id + "/cancel", "").status, 200);
    }
}

TEST_F(JobsApi, PositionInQueueIsExactBelowTheCapAndTheCapBeyond) {
    // test.controlled jobs wait: only workers that a queue test starts itself run them.
    // Premium puts them ahead of any job another test left pending at a lower priority.
    // The cap is kiln-api's, from the stack's config: scripts/test sets one that is not the
    // default, so a kiln-api that ignored its config fails here.
    const int cap = static_cast<int>(stack.config.api.queue_position_cap);
    ASSERT_NE(cap, static_cast<int>(ApiConfig{}.queue_position_cap));
    std::vector<std::string> ids;
    std::vector<int> created_positions;
    // cap + 2 jobs: the last has at least cap + 1 ahead of it, which the cap must hide.
    for (int i = 0; i <= cap + 1; ++i) {
        auto r =
            client.post_json("/api/v1/jobs", R"({"type":"test.controlled","priority":"premium"})");
        ASSERT_EQ(r.status, 201) << r.body;
        ids.push_back(r.json()["id"]);
        created_positions.push_back(r.json()["position_in_queue"].get<int>());
    }
    // Each job has the ones created before it ahead of it, plus at most the premium jobs that
    // were already waiting (a stack worker may start one of those meanwhile), until the count
    // reaches the cap.
    const int before = created_positions.front();
    for (int i = 1; i < cap - before; ++i) {
        EXPECT_GE(created_positions[i], i) << i;
        EXPECT_LE(created_positions[i], before + i) << i;
    }
    EXPECT_EQ(created_positions.back(), cap);
    auto last = client.get("/api/v1/jobs/" + ids.back()).json();
    EXPECT_EQ(last["position_in_queue"], cap);
    auto middle = client.get("/api/v1/jobs/" + ids[cap / 2]).json()["position_in_queue"];
    EXPECT_GE(middle.get<int>(), cap / 2);
    EXPECT_LE(middle.get<int>(), before + cap / 2);
    for (const auto& id : ids) {
        EXPECT_EQ(client.post_json("/api/v1/jobs/" + id + "/cancel", "").status, 200);
    }
}

}  // namespace
}  // namespace kiln::test
