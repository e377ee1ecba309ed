// Untrusted text in log lines: every field a peer (VM, local client, policy
// answer) controls goes through log_field(), which bounds and escapes it, and
// repeated rejections from one source go through a RateLimiter, so that a
// hostile peer can grow the log only by a bounded amount per second.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qrexec::io {

inline constexpr size_t kLogFieldMax = 128;

// At most `max_bytes` input bytes, printable ASCII kept, '\\' and every other
// byte written as \\xNN; a longer input ends in "...(+N bytes)". The result
// is at most 4 * max_bytes + 24 bytes long.
std::string log_field(std::string_view text, size_t max_bytes = kLogFieldMax);

// Token bucket for log lines of one source: `burst` lines at once, then one
// per `interval`. Lines refused meanwhile are counted, and the next admitted
// line reports how many were suppressed.
class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;
    struct Admission {
        bool log = false;
        uint64_t suppressed = 0; // lines dropped since the last admitted one
    };

    RateLimiter(unsigned burst, std::chrono::milliseconds interval)
        : burst_(burst), interval_(interval), tokens_(burst) {}
    Admission admit(Clock::time_point now = Clock::now());
    uint64_t total_suppressed() const { return total_suppressed_; }

  private:
    unsigned burst_;
    std::chrono::milliseconds interval_;
    unsigned tokens_;
    Clock::time_point last_refill_{};
    bool started_ = false;
    uint64_t suppressed_ = 0;
    uint64_t total_suppressed_ = 0;
};

// " (N similar messages suppressed)" or "" — appended to an admitted line.
std::string suppressed_note(uint64_t suppressed);

} // namespace qrexec::io
