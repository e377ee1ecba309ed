#include "io/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace qrexec::io {
namespace {
// Process-wide identity for log lines; written once before any thread exists.
char g_program[64] = "qrexec";
} // namespace

void set_log_program(std::string_view program) {
    auto slash = program.rfind('/');
    if (slash != std::string_view::npos) program = program.substr(slash + 1);
    size_t n = std::min(program.size(), sizeof g_program - 1);
    std::memcpy(g_program, program.data(), n);
    g_program[n] = '\0';
}

std::string errno_text(int err) {
    return std::strerror(err);
}

std::string format_log_line(const char* file, int line, const char* func,
                            std::string_view message) {
    // Last line of defence against a field that escaped io::log_field().
    constexpr size_t kMaxMessage = 4096;
    std::string clipped;
    if (message.size() > kMaxMessage) {
        clipped = fmt::format("{}...(+{} bytes)", message.substr(0, kMaxMessage),
                              message.size() - kMaxMessage);
        message = clipped;
    }
    timeval now{};
    gettimeofday(&now, nullptr);
    tm local{};
    localtime_r(&now.tv_sec, &local);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    const char* base = std::strrchr(file, '/');
    base = base ? base + 1 : file;
    return fmt::format("{}.{:03d} {}[{}]: {}:{}:{}: {}\n", stamp,
                       static_cast<int>(now.tv_usec / 1000), g_program, getpid(), base, line, func,
                       message);
}

void write_log_line(const char* file, int line, const char* func, std::string_view message) {
    int saved_errno = errno;
    auto text = format_log_line(file, line, func, message);
    // One write per line so concurrent processes sharing stderr do not interleave.
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(2, text.data() + off, text.size() - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        off += static_cast<size_t>(n);
    }
    errno = saved_errno;
}

void require_standard_fds(std::string_view program) {
    set_log_program(program);
    for (int fd = 0; fd <= 2; ++fd) {
        if (fcntl(fd, F_GETFD) == -1) {
            auto text =
                fmt::format("{}: File descriptor {} is closed, cannot continue\n", program, fd);
            // stderr may be the closed one; try anyway, nothing else to do.
            [[maybe_unused]] auto r = ::write(2, text.data(), text.size());
            _exit(125);
        }
    }
}

} // namespace qrexec::io
