// The budget that keeps a failing dependency from flooding the log with one line per request.

#include <gtest/gtest.h>

#include "core/log.hpp"

namespace kiln::log {
namespace {

using namespace std::chrono_literals;

TEST(RateLimit, LetsThroughTheBudgetOfASecondThenCountsWhatItDrops) {
    RateLimit budget(3);
    const auto t0 = RateLimit::Clock::time_point{} + 100s;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(budget.admit(t0 + std::chrono::milliseconds(i)), 0u);
    EXPECT_FALSE(budget.admit(t0 + 10ms));
    EXPECT_FALSE(budget.admit(t0 + 999ms));
    // A new second: the first line says two were dropped, the next none.
    EXPECT_EQ(budget.admit(t0 + 1000ms), 2u);
    EXPECT_EQ(budget.admit(t0 + 1001ms), 0u);
}

TEST(RateLimit, AQuietSpellStartsAFreshBudget) {
    RateLimit budget(1);
    const auto t0 = RateLimit::Clock::time_point{} + 100s;
    EXPECT_EQ(budget.admit(t0), 0u);
    EXPECT_FALSE(budget.admit(t0 + 1ms));
    EXPECT_EQ(budget.admit(t0 + 1h), 1u);
    EXPECT_FALSE(budget.admit(t0 + 1h + 1ms));
}

}  // namespace
}  // namespace kiln::log
