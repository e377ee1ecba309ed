// RAII file descriptors and small fd helpers.
#pragma once

#include <sys/types.h>

#include <span>
#include <string>
#include <utility>

namespace qrexec::io {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~Fd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

struct FdPair {
    Fd first;
    Fd second;
};

// AF_UNIX SOCK_STREAM socketpair, both ends close-on-exec.
FdPair make_socketpair();
// pipe: first = read end, second = write end; close-on-exec.
FdPair make_pipe();

void set_nonblocking(int fd, bool on = true);
void set_cloexec(int fd, bool on = true);
bool is_socket(int fd);

// Blocking full write/read helpers; return false on error / EOF.
bool write_all(int fd, std::span<const std::byte> data);
bool write_all(int fd, std::string_view text);
// Reads exactly data.size() bytes; returns bytes read (less means EOF), -1 on error.
ssize_t read_all(int fd, std::span<std::byte> data);

// Waits until fd is readable (or has an error), up to timeout_ms (-1 = forever).
// Returns true if ready.
bool wait_readable(int fd, int timeout_ms);

} // namespace qrexec::io
