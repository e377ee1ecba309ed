#include "agent/service_log.h"

#include <syslog.h>

#include <memory>
#include <mutex>

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

namespace {
// syslog(3)'s tag is one per process (openlog). Calls served by threads of the
// agent each have their own tag, so every record sets it under this lock; the
// tag string stays alive here until the next record replaces it.
struct SyslogIdentity {
    std::mutex mutex;
    std::string tag;
};
SyslogIdentity& syslog_identity() {
    static SyslogIdentity identity;
    return identity;
}
} // namespace

LineSplitter::Sink syslog_sink(const std::string& tag) {
    return [tag](std::string_view line) {
        auto& identity = syslog_identity();
        std::lock_guard lock(identity.mutex);
        if (identity.tag != tag) {
            identity.tag = tag;
            openlog(identity.tag.c_str(), 0, LOG_USER);
        }
        syslog(LOG_NOTICE, "%.*s", static_cast<int>(line.size()), line.data());
    };
}

} // namespace qrexec::agent
