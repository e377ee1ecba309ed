// Data-port bookkeeping of one daemon (DAEMON.md §4.1): ports 513..768, each
// slot remembers the peer domain it was handed to. Pure; no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace qrexec::daemon {

class PortAllocator {
  public:
    static constexpr uint32_t kFirstPort = 513;
    static constexpr uint32_t kCount = 256;

    explicit PortAllocator(uint32_t own_domain) : own_domain_(own_domain) {}

    static bool in_range(uint32_t port) { return port >= kFirstPort && port < kFirstPort + kCount; }

    // Lowest free port for peer_domain respecting the parity rule: any index
    // for dom0; odd indices (514, 516, ...) for peers above our own id; even
    // indices (513, 515, ...) for peers at or below it. nullopt when full.
    std::optional<uint32_t> allocate(uint32_t peer_domain);
    // Frees the port only when it is recorded for that same peer (P§6.5).
    bool release(uint32_t peer_domain, uint32_t port);
    std::optional<uint32_t> peer_of(uint32_t port) const;
    size_t in_use() const;
    size_t held_by(uint32_t peer_domain) const;

  private:
    uint32_t own_domain_;
    std::array<std::optional<uint32_t>, kCount> slots_{};
};

} // namespace qrexec::daemon
