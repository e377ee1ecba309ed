#include "io/trace.h"

#include <fmt/format.h>

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace qrexec::io {
namespace {

// Opened on first use, then read-only for the life of the process (children
// forked later inherit it; the fd is CLOEXEC so exec'ed programs do not).
struct TraceSink {
    int fd = -1;
    TraceSink() {
        const char* path = std::getenv("QREXEC_TRACE");
        if (!path || !*path) return;
        fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    }
};

const TraceSink& sink() {
    static const TraceSink instance;
    return instance;
}

} // namespace

bool trace_on() {
    return sink().fd >= 0;
}

int trace_fd() {
    return sink().fd;
}

void trace_line(std::string_view stage, std::string_view rest) {
    int fd = sink().fd;
    if (fd < 0) return;
    int saved_errno = errno;
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t us =
        static_cast<uint64_t>(now.tv_sec) * 1'000'000u + static_cast<uint64_t>(now.tv_nsec) / 1000u;
    auto text =
        fmt::format("{} {}[{}] {} {}\n", us, program_invocation_short_name, getpid(), stage, rest);
    // One write: O_APPEND keeps lines of concurrent processes whole.
    [[maybe_unused]] ssize_t n = ::write(fd, text.data(), text.size());
    errno = saved_errno;
}

std::string trace_vchan_token(uint32_t domain_a, uint32_t domain_b, uint32_t port) {
    return fmt::format("vchan:{}-{}-{}", std::min(domain_a, domain_b), std::max(domain_a, domain_b),
                       port);
}

} // namespace qrexec::io
