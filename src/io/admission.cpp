#include "io/admission.h"

namespace qrexec::io {

AdmissionTable::Decision AdmissionTable::decide(size_t occupied) const {
    if (occupied < capacity_) return {true, std::nullopt};
    if (order_.empty()) return {false, std::nullopt};
    return {true, order_.front()};
}

void AdmissionTable::opened(uint64_t key) {
    closed(key); // a reused key (fd number) starts afresh
    order_.push_back(key);
    where_[key] = std::prev(order_.end());
}

void AdmissionTable::completed(uint64_t key) {
    closed(key);
}

void AdmissionTable::closed(uint64_t key) {
    auto it = where_.find(key);
    if (it == where_.end()) return;
    order_.erase(it->second);
    where_.erase(it);
}

} // namespace qrexec::io
