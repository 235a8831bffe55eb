// The claim's order and its cost when the head of the queue belongs to types a worker does not
// run. Each test works in a database of its own on the stack's MariaDB, migrated from sql/, so
// the thousands of jobs it queues are seen by no other test and no worker.

#include <gtest/gtest.h>
#include <string>
#include <vector>

#include "core/db/mariadb.hpp"
#include "core/jobs/queue.hpp"
#include "tests/integration/support/stack.hpp"

namespace kiln::test {
namespace {

class Claim : public ::testing::Test {
  protected:
    void SetUp() override {
        auto conn = db::Connection::open(database_.config());
        ASSERT_TRUE(conn) << conn.error().describe();
        conn_ = std::move(*conn);
    }

    // `count` due jobs of `type`, queued `age_seconds` ago (all at the same time).
    void queue(const std::string& type, int priority, int count, int age_seconds) {
        // seq_1_to_20000 is MariaDB's sequence engine: the rows are made in the server.
        auto r = conn_->execute(
            "INSERT INTO jobs (id, owner, type, status, priority, params, max_attempts, run_at, "
            "created_at, updated_at) "
            "SELECT CONCAT(LEFT(?, 6), LPAD(s.seq, 20, '0')), 'claim-test', ?, 'pending', ?, "
            "'{}', 3, NOW(3) - INTERVAL ? SECOND, NOW(3), NOW(3) FROM seq_1_to_20000 s "
            "WHERE s.seq <= ?",
            {std::to_string(++batches_) + type, type, std::int64_t{priority},
             std::int64_t{age_seconds}, std::int64_t{count}});
        ASSERT_TRUE(r) << r.error().describe();
        ASSERT_EQ(*r, static_cast<std::uint64_t>(count));
    }

    std::vector<jobs::ClaimedJob> claim(const std::vector<std::string>& types, int max_jobs) {
        jobs::ClaimRequest request;
        request.worker = "claim-test";
        request.types = types;
        request.max_jobs = max_jobs;
        auto claimed = jobs::claim_jobs(*conn_, request);
        EXPECT_TRUE(claimed) << claimed.error().describe();
        return claimed ? *claimed : std::vector<jobs::ClaimedJob>{};
    }

    // Index entries this connection's statements have read in order (Handler_read_next).
    std::int64_t entries_read() {
        auto rows = conn_->query("SHOW SESSION STATUS LIKE 'Handler_read_next'");
        EXPECT_TRUE(rows && rows->size() == 1);
        return rows && !rows->empty() ? rows->front().integer(1) : 0;
    }

    PrivateDatabase database_{"claim_test"};
    std::unique_ptr<db::Connection> conn_;
    int batches_ = 0;
};

std::vector<std::string> types_of(const std::vector<jobs::ClaimedJob>& claimed) {
    std::vector<std::string> out;
    for (const auto& job : claimed) out.push_back(job.type + "/" + job.id.substr(0, 1));
    return out;
}

TEST_F(Claim, AWorkerOfOtherTypesDoesNotReadThroughTheBacklogAheadOfItsJob) {
    queue("test.backlog", 50, 20000, 3600);
    queue("test.wanted", 50, 1, 0);
    const auto before = entries_read();
    auto claimed = claim({"test.other", "test.wanted"}, 1);
    const auto read = entries_read() - before;
    ASSERT_EQ(claimed.size(), 1u);
    EXPECT_EQ(claimed[0].type, "test.wanted");
    // Reading past the backlog would be 20,000 entries; the claim gives up its ordered read
    // after 256 and reads the wanted type's own stretch of the index instead.
    EXPECT_LT(read, 1000) << "the claim read " << read << " index entries";
}

// The same jobs are claimed in the same order whether the claim finds them by its ordered read
// or, behind a backlog of other types, type by type: premium before standard before batch, and
// within a priority the longest waiting first, across types; jobs not yet due stay.
class ClaimOrder : public Claim, public ::testing::WithParamInterface<bool> {};

TEST_P(ClaimOrder, IsPriorityThenWaitingTimeAcrossTypes) {
    const bool behind_backlog = GetParam();
    if (behind_backlog) queue("test.backlog", 90, 3000, 7200);
    queue("test.a", 10, 1, 300);   // batch, waiting longest: last
    queue("test.a", 50, 1, 60);    // standard
    queue("test.b", 50, 1, 120);   // standard, waiting longer: before the test.a one
    queue("test.b", 90, 1, 0);     // premium: first
    queue("test.a", 90, 1, -600);  // premium, but due in ten minutes: not claimed
    auto claimed = claim({"test.a", "test.b"}, 10);
    // The id's first character numbers the queue() call that made the job.
    const int first = behind_backlog ? 2 : 1;
    auto id = [&](int call) { return std::string(1, static_cast<char>('0' + first + call)); };
    EXPECT_EQ(types_of(claimed), (std::vector<std::string>{"test.b/" + id(3), "test.b/" + id(2),
                                                           "test.a/" + id(1), "test.a/" + id(0)}));
    EXPECT_TRUE(claim({"test.a", "test.b"}, 10).empty()) << "claimed jobs are claimed once";
}

INSTANTIATE_TEST_SUITE_P(ReadInOrderOrByType, ClaimOrder, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                             return p.param ? "BehindABacklogOfOtherTypes" : "AtTheHead";
                         });

}  // namespace
}  // namespace kiln::test
