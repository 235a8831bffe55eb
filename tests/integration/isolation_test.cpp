// Owners see only their own jobs; another owner's job is answered exactly like a missing one.

#include <gtest/gtest.h>

#include "core/util/crypto.hpp"
#include "tests/integration/support/http_client.hpp"
#include "tests/integration/support/media.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

TEST(OwnerIsolation, AnotherOwnersJobLooksExactlyLikeAMissingOne) {
    const Stack& stack = Stack::get();
    Client alice = stack.admin().with_token(stack.create_token("alice"));
    Client bob = stack.admin().with_token(stack.create_token("bob"));

    auto created = alice.post_multipart("/api/v1/jobs",
                                        {{"type", "image.thumbnails"}, {"file", "", media::png()}});
    ASSERT_EQ(created.status, 201) << created.body;
    const std::string id = created.json()["id"];
    const std::string name = created.json()["sources"][0]["name"];

    const std::string guessed = "/api/v1/jobs/" + util::new_job_id();
    for (const std::string& suffix :
         std::vector<std::string>{"", "/sources", "/sources/" + name, "/results"}) {
        SCOPED_TRACE(suffix);
        auto theirs = bob.get("/api/v1/jobs/" + id + suffix);
        auto missing = bob.get(guessed + suffix);
        EXPECT_EQ(theirs.status, 404);
        EXPECT_EQ(theirs.body, missing.body);
        EXPECT_EQ(alice.get("/api/v1/jobs/" + id + suffix).status, 200);
    }

    auto bobs_list = bob.get("/api/v1/jobs?limit=500");
    ASSERT_EQ(bobs_list.status, 200);
    for (const auto& j : bobs_list.json()["jobs"]) EXPECT_NE(j["id"], id);

    // An admin token sees every owner's jobs.
    EXPECT_EQ(stack.admin().get("/api/v1/jobs/" + id).status, 200);
}

}  // namespace
}  // namespace kiln::test
