// Bounded, escaped log fields and the per-source log rate limiter (issue 11, weak point 1).
#include "io/log_field.h"

#include <gtest/gtest.h>

using namespace qrexec::io;
using namespace std::chrono_literals;

TEST(LogField, KeepsPrintableTextAsIs) {
    EXPECT_EQ(log_field("qubes.Filecopy+a-b"), "qubes.Filecopy+a-b");
}

TEST(LogField, EscapesControlBytesBackslashAndHighBytes) {
    EXPECT_EQ(log_field(std::string_view("a\x1b[2J\n\\\xff\0z", 10)),
              "a\\x1b[2J\\x0a\\x5c\\xff\\x00z");
}

TEST(LogField, BoundsLongInputAndSaysHowMuchWasCut) {
    std::string huge(60000, 'A');
    auto shown = log_field(huge, 128);
    EXPECT_EQ(shown, std::string(128, 'A') + "...(+59872 bytes)");
}

TEST(LogField, WorstCaseOutputIsBounded) {
    std::string hostile(65000, '\x01');
    EXPECT_LE(log_field(hostile).size(), 4 * kLogFieldMax + 24);
}

TEST(RateLimiter, AdmitsABurstThenSuppressesAndCounts) {
    RateLimiter limiter(3, 1000ms);
    auto t0 = RateLimiter::Clock::time_point{} + 1h;
    for (int i = 0; i < 3; ++i)
        EXPECT_TRUE(limiter.admit(t0).log);
    for (int i = 0; i < 5; ++i)
        EXPECT_FALSE(limiter.admit(t0 + 10ms).log);
    EXPECT_EQ(limiter.total_suppressed(), 5u);
    // One token per interval; the next admitted line reports the drops.
    auto next = limiter.admit(t0 + 1001ms);
    EXPECT_TRUE(next.log);
    EXPECT_EQ(next.suppressed, 5u);
    EXPECT_FALSE(limiter.admit(t0 + 1002ms).log);
    EXPECT_EQ(suppressed_note(next.suppressed), " (5 similar messages suppressed)");
    EXPECT_EQ(suppressed_note(0), "");
}

TEST(RateLimiter, RefillNeverExceedsTheBurst) {
    RateLimiter limiter(2, 100ms);
    auto t0 = RateLimiter::Clock::time_point{} + 1h;
    EXPECT_TRUE(limiter.admit(t0).log);
    // A long quiet time earns at most `burst` lines.
    auto later = t0 + 1h;
    EXPECT_TRUE(limiter.admit(later).log);
    EXPECT_TRUE(limiter.admit(later).log);
    EXPECT_FALSE(limiter.admit(later).log);
}
