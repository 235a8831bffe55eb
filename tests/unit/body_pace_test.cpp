// The pace an upload body must keep: at least min_bytes in every window, measured when reads
// return, so a steady slow upload passes and a trickle is given up.

#include <gtest/gtest.h>

#include "core/http/request.hpp"

namespace kiln::http {
namespace {

using namespace std::chrono_literals;

TEST(BodyPace, AWindowWithEnoughBytesPassesAndStartsTheNext) {
    const auto t0 = BodyPace::Clock::now();
    BodyPace pace(t0, 30s, 1000);
    EXPECT_TRUE(pace.on_read(600, t0 + 10s));
    EXPECT_TRUE(pace.on_read(600, t0 + 31s));  // 1200 in the first window
    // The next window starts at 31 s and counts afresh.
    EXPECT_TRUE(pace.on_read(999, t0 + 50s));
    EXPECT_TRUE(pace.on_read(1, t0 + 61s));
}

TEST(BodyPace, ATrickleIsGivenUpAtTheEndOfItsWindow) {
    const auto t0 = BodyPace::Clock::now();
    BodyPace pace(t0, 30s, 1000);
    EXPECT_TRUE(pace.on_read(1, t0 + 25s));  // within the window: not judged yet
    EXPECT_FALSE(pace.on_read(1, t0 + 50s));
}

TEST(BodyPace, AFastStartDoesNotBuyAStallLater) {
    const auto t0 = BodyPace::Clock::now();
    BodyPace pace(t0, 30s, 1000);
    EXPECT_TRUE(pace.on_read(1'000'000, t0 + 1s));
    EXPECT_TRUE(pace.on_read(1, t0 + 30s));   // first window: 1,000,001 bytes
    EXPECT_FALSE(pace.on_read(1, t0 + 60s));  // second window: 1 byte
}

}  // namespace
}  // namespace kiln::http
