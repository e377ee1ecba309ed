// Helpers shared by the libFuzzer targets: an invariant that fails aborts (a
// finding), and the input is cut into chunks the way a socket may deliver it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace qrexec::fuzz {

inline void require(bool condition) {
    if (!condition) std::abort();
}

inline std::span<const std::byte> as_span(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const std::byte*>(data), size};
}

// Splits `bytes` into chunks whose sizes (1..64) come from `seed`.
template <typename F> void for_each_chunk(std::span<const std::byte> bytes, uint8_t seed, F&& f) {
    size_t off = 0;
    unsigned state = seed | 1u;
    while (off < bytes.size()) {
        state = state * 1103515245u + 12345u;
        size_t n = 1 + (state >> 16) % 64;
        if (n > bytes.size() - off) n = bytes.size() - off;
        f(bytes.subspan(off, n));
        off += n;
    }
}

} // namespace qrexec::fuzz
