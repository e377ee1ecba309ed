#include "io/fd_limit.h"

#include "io/log.h"

#include <algorithm>
#include <cerrno>

namespace qrexec::io {

std::optional<rlim_t> raise_soft_fd_limit(rlim_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        QLOG_ERRNO("getrlimit RLIMIT_NOFILE");
        return std::nullopt;
    }
    if (limit.rlim_cur == RLIM_INFINITY) return std::nullopt;
    rlim_t target = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    if (limit.rlim_cur >= target) return std::nullopt;
    rlim_t original = limit.rlim_cur;
    limit.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        QLOG_ERRNO("setrlimit RLIMIT_NOFILE {}", static_cast<unsigned long long>(target));
        return std::nullopt;
    }
    return original;
}

bool set_soft_fd_limit(rlim_t soft) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        QLOG_ERRNO("getrlimit RLIMIT_NOFILE");
        return false;
    }
    limit.rlim_cur = soft;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        QLOG_ERRNO("setrlimit RLIMIT_NOFILE {}", static_cast<unsigned long long>(soft));
        return false;
    }
    return true;
}

void restore_soft_fd_limit(pid_t pid, rlim_t soft) {
    rlimit limit{};
    if (::prlimit(pid, RLIMIT_NOFILE, nullptr, &limit) != 0) {
        if (errno != ESRCH && errno != EPERM) QLOG_ERRNO("prlimit of pid {}", pid);
        return;
    }
    if (limit.rlim_cur <= soft) return;
    limit.rlim_cur = soft;
    if (::prlimit(pid, RLIMIT_NOFILE, &limit, nullptr) != 0 && errno != ESRCH && errno != EPERM)
        QLOG_ERRNO("prlimit of pid {}", pid);
}

} // namespace qrexec::io
