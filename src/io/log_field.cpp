#include "io/log_field.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace qrexec::io {

std::string log_field(std::string_view text, size_t max_bytes) {
    std::string_view shown = text.substr(0, std::min(text.size(), max_bytes));
    std::string out;
    out.reserve(shown.size() + 16);
    for (char c : shown) {
        auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f && c != '\\')
            out.push_back(c);
        else
            out += fmt::format("\\x{:02x}", byte);
    }
    if (text.size() > shown.size())
        out += fmt::format("...(+{} bytes)", text.size() - shown.size());
    return out;
}

RateLimiter::Admission RateLimiter::admit(Clock::time_point now) {
    if (!started_) {
        started_ = true;
        last_refill_ = now;
    }
    if (interval_.count() > 0 && now > last_refill_) {
        auto earned = (now - last_refill_) / interval_;
        if (earned > 0) {
            auto room = static_cast<long long>(burst_ - tokens_);
            tokens_ += static_cast<unsigned>(std::min<long long>(earned, room));
            last_refill_ += interval_ * earned;
        }
    }
    if (tokens_ == 0) {
        ++suppressed_;
        ++total_suppressed_;
        return {false, 0};
    }
    --tokens_;
    return {true, std::exchange(suppressed_, 0)};
}

std::string suppressed_note(uint64_t suppressed) {
    if (suppressed == 0) return {};
    return fmt::format(" ({} similar messages suppressed)", suppressed);
}

} // namespace qrexec::io
