// Admission control for a listening socket's connection table, in the manner
// of sshd's MaxStartups: when the table is full, a new connection replaces the
// oldest one that has not yet sent a complete request, so idle or dripping
// peers cannot lock real callers out. Connections that completed their request
// are never evicted; when every entry has, the newcomer is refused.
// Pure bookkeeping: the owner closes the connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>

namespace qrexec::io {

class AdmissionTable {
  public:
    explicit AdmissionTable(size_t capacity) : capacity_(capacity) {}

    struct Decision {
        bool admit = false;
        std::optional<uint64_t> evict; // close this one first (when admitting)
    };
    // Called for a newly accepted connection; `occupied` is how many entries
    // the owner's table holds (complete ones included).
    Decision decide(size_t occupied) const;

    void opened(uint64_t key);    // a new, not yet complete connection
    void completed(uint64_t key); // sent its complete request: never evicted
    void closed(uint64_t key);    // gone (any state)

    size_t incomplete() const { return order_.size(); }
    size_t capacity() const { return capacity_; }

  private:
    size_t capacity_;
    std::list<uint64_t> order_; // incomplete connections, oldest first
    std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

} // namespace qrexec::io
