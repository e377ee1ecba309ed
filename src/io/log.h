// Diagnostics in upstream's log-line format (AGENT.md §2.3):
//   YYYY-mm-dd HH:MM:SS.mmm <prog>[<pid>]: <file>:<line>:<func>: <msg>
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace qrexec::io {

// The program name is set once at startup, like openlog(3).
void set_log_program(std::string_view program);
void write_log_line(const char* file, int line, const char* func, std::string_view message);
// The line write_log_line writes (with its newline), for a diagnostic that goes
// somewhere else than this process' stderr (a call's STDERR stream).
std::string format_log_line(const char* file, int line, const char* func, std::string_view message);

// Exits 125 when fd 0, 1 or 2 is closed (every qrexec program does this first).
void require_standard_fds(std::string_view program);

} // namespace qrexec::io

#define QLOG(...)                                                                                  \
    ::qrexec::io::write_log_line(__FILE__, __LINE__, __func__, ::fmt::format(__VA_ARGS__))
#define QLOG_TEXT(...)                                                                             \
    ::qrexec::io::format_log_line(__FILE__, __LINE__, __func__, ::fmt::format(__VA_ARGS__))
#define QLOG_ERRNO(...)                                                                            \
    ::qrexec::io::write_log_line(__FILE__, __LINE__, __func__,                                     \
                                 ::fmt::format(__VA_ARGS__) + ": " +                               \
                                     ::qrexec::io::errno_text(errno))

namespace qrexec::io {
std::string errno_text(int err);
}
