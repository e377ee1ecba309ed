#include "daemon/port_allocator.h"

#include <algorithm>

namespace qrexec::daemon {

std::optional<uint32_t> PortAllocator::allocate(uint32_t peer_domain) {
    uint32_t first = 0;
    uint32_t step = 1;
    if (peer_domain != 0) {
        // The two daemons of a VM pair use disjoint halves, so a
        // CONNECTION_TERMINATED seen by one can never free the other's port.
        first = peer_domain > own_domain_ ? 1 : 0;
        step = 2;
    }
    for (uint32_t i = first; i < kCount; i += step) {
        if (!slots_[i]) {
            slots_[i] = peer_domain;
            return kFirstPort + i;
        }
    }
    return std::nullopt;
}

bool PortAllocator::release(uint32_t peer_domain, uint32_t port) {
    if (!in_range(port)) return false;
    auto& slot = slots_[port - kFirstPort];
    if (!slot || *slot != peer_domain) return false;
    slot.reset();
    return true;
}

std::optional<uint32_t> PortAllocator::peer_of(uint32_t port) const {
    if (!in_range(port)) return std::nullopt;
    return slots_[port - kFirstPort];
}

size_t PortAllocator::in_use() const {
    return static_cast<size_t>(
        std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s.has_value(); }));
}

size_t PortAllocator::held_by(uint32_t peer_domain) const {
    return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [&](const auto& s) {
        return s.has_value() && *s == peer_domain;
    }));
}

} // namespace qrexec::daemon
