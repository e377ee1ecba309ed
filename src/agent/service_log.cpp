#include "agent/service_log.h"

#include <syslog.h>

#include <memory>

namespace qrexec::agent {

void LineSplitter::feed(std::span<const std::byte> data) {
    for (auto b : data) {
        char c = static_cast<char>(b);
        if (c == '\n') {
            sink_(partial_);
            partial_.clear();
            continue;
        }
        partial_.push_back(c);
        if (partial_.size() >= kMaxLine) {
            sink_(partial_);
            partial_.clear();
        }
    }
}

void LineSplitter::flush() {
    if (partial_.empty()) return;
    sink_(partial_);
    partial_.clear();
}

LineSplitter::Sink syslog_sink(const std::string& tag) {
    // openlog keeps the pointer: the tag must outlive every syslog() call.
    auto kept = std::make_shared<std::string>(tag);
    openlog(kept->c_str(), 0, LOG_USER);
    return [kept](std::string_view line) {
        syslog(LOG_NOTICE, "%.*s", static_cast<int>(line.size()), line.data());
    };
}

} // namespace qrexec::agent
