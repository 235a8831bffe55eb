// The queue behind kiln-api's upload threads and kiln-worker's slots: admission counts work in
// hand, and closing lets the threads finish what was handed over before they stop.

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "core/util/work_queue.hpp"

namespace kiln::util {
namespace {

TEST(WorkQueue, AdmitsUpToTheLimitCountingItemsInHand) {
    WorkQueue<std::unique_ptr<int>> queue;
    auto first = std::make_unique<int>(1);
    auto second = std::make_unique<int>(2);
    ASSERT_TRUE(queue.push(first, 2));
    EXPECT_EQ(first, nullptr);  // moved in
    auto taken = queue.pop();
    ASSERT_TRUE(taken.has_value());
    EXPECT_EQ(**taken, 1);
    ASSERT_TRUE(queue.push(second, 2));

    // One in hand and one waiting: a third is refused and stays with the caller.
    auto third = std::make_unique<int>(3);
    EXPECT_FALSE(queue.push(third, 2));
    ASSERT_NE(third, nullptr);
    EXPECT_EQ(*third, 3);
    EXPECT_EQ(queue.load(), 2u);

    queue.done();
    EXPECT_EQ(queue.in_hand(), 0u);
    EXPECT_TRUE(queue.push(third, 2));
}

TEST(WorkQueue, HandsOutInOrderAndAfterCloseOnlyWhatWaits) {
    WorkQueue<int> queue;
    for (int i = 1; i <= 3; ++i) queue.push(i);
    queue.close();
    std::vector<int> seen;
    while (auto item = queue.pop()) {
        seen.push_back(*item);
        queue.done();
    }
    EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
    EXPECT_FALSE(queue.pop().has_value());
}

TEST(WorkQueue, CloseWakesEveryWaitingThread) {
    WorkQueue<int> queue;
    std::vector<std::thread> threads;
    std::atomic<int> finished{0};
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&] {
            while (auto item = queue.pop()) queue.done();
            ++finished;
        });
    }
    int item = 7;
    queue.push(item);
    queue.close();
    for (auto& t : threads) t.join();  // would hang if a waiting thread were not woken
    EXPECT_EQ(finished.load(), 4);
    EXPECT_EQ(queue.load(), 0u);
}

TEST(WorkQueue, TakeWaitingLeavesItemsInHandCounted) {
    WorkQueue<int> queue;
    for (int i = 1; i <= 3; ++i) queue.push(i);
    auto running = queue.pop();
    ASSERT_TRUE(running.has_value());
    const auto left = queue.take_waiting();
    EXPECT_EQ(left, (std::deque<int>{2, 3}));
    EXPECT_EQ(queue.load(), 1u);
    EXPECT_EQ(queue.in_hand(), 1u);
}

}  // namespace
}  // namespace kiln::util
