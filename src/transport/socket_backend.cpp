#include "transport/socket_backend.h"

#include "io/log.h"
#include "io/unix_address.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>

namespace qrexec::transport {
namespace {

using Clock = std::chrono::steady_clock;

// Large kernel buffers let one writev carry a whole 64 KiB frame.
constexpr int kSocketBufferBytes = 1 << 20;

// Data-connection wait: a try every 100 us for the first 4 ms, where the
// server almost always appears (a call's peer learns the port 0.2-1 ms after
// us: a doubling pause from the start made each call wait for its next try,
// 0.25 ms on average), then doubling to one try per second.
constexpr std::chrono::microseconds kFirstConnectPause{100};
constexpr std::chrono::microseconds kSteadyConnectWindow{4000};
constexpr std::chrono::microseconds kMaxConnectPause{1'000'000};

int remaining_ms(Clock::time_point deadline, int timeout_ms) {
    if (timeout_ms < 0) return -1;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::max<long long>(0, left));
}

void enlarge_buffers(int fd) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof kSocketBufferBytes);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof kSocketBufferBytes);
}

class SocketChannel final : public Channel {
  public:
    explicit SocketChannel(io::Fd fd) : fd_(std::move(fd)) {
        io::set_nonblocking(fd_.get());
        enlarge_buffers(fd_.get());
    }
    int fd() const override { return fd_.get(); }
    ssize_t read(std::span<std::byte> buffer) override {
        for (;;) {
            ssize_t n = ::read(fd_.get(), buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) continue;
            return n;
        }
    }
    ssize_t writev(const iovec* iov, int count) override {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(count);
        for (;;) {
            ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            return n;
        }
    }

  private:
    io::Fd fd_;
};

class SocketServer final : public PendingServer {
  public:
    SocketServer(io::Fd listener, std::string path, ino_t inode)
        : listener_(std::move(listener)), path_(std::move(path)), inode_(inode) {}
    ~SocketServer() override { release_path(); }
    int fd() const override { return listener_.get(); }

    std::unique_ptr<Channel> accept() override {
        int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR) return nullptr;
            throw std::system_error(errno, std::generic_category(), "accept");
        }
        // One client per vchan: drop the listener at once so no later client can
        // ever meet a listener that will not serve it (the upstream port-reuse hang).
        release_path();
        return make_socket_channel(io::Fd(fd));
    }

  private:
    // Unlinks the path only while it still names our socket (a newer server may
    // already have re-bound it).
    void release_path() {
        if (!listener_) return;
        struct stat st {};
        if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
        listener_.reset();
    }

    io::Fd listener_;
    std::string path_;
    ino_t inode_;
};

} // namespace

bool Channel::send_all(std::span<const std::byte> data, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    size_t off = 0;
    while (off < data.size()) {
        iovec iov{const_cast<std::byte*>(data.data() + off), data.size() - off};
        ssize_t n = writev(&iov, 1);
        if (n > 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno != EAGAIN) return false;
        pollfd p{fd(), POLLOUT, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline, timeout_ms));
        if (r == 0) return false;
    }
    return true;
}

bool Channel::recv_all(std::span<std::byte> buffer, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    size_t off = 0;
    while (off < buffer.size()) {
        ssize_t n = read(buffer.subspan(off));
        if (n > 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (n == 0) return false;
        if (errno != EAGAIN) return false;
        pollfd p{fd(), POLLIN, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline, timeout_ms));
        if (r == 0) return false;
    }
    return true;
}

std::unique_ptr<Channel> PendingServer::wait_for_client(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    for (;;) {
        if (auto channel = accept()) return channel;
        pollfd p{fd(), POLLIN, 0};
        int r = ::poll(&p, 1, remaining_ms(deadline, timeout_ms));
        if (r == 0) return nullptr;
    }
}

SocketBackendConfig SocketBackendConfig::from_environment() {
    SocketBackendConfig config;
    if (const char* domain = std::getenv("VCHAN_DOMAIN")) config.own_domain = std::atoi(domain);
    if (const char* dir = std::getenv("VCHAN_SOCKET_DIR")) config.socket_dir = dir;
    return config;
}

std::string vchan_socket_path(const std::string& dir, int server_domain, int client_domain,
                              int port) {
    return dir + "/vchan." + std::to_string(server_domain) + "." + std::to_string(client_domain) +
           "." + std::to_string(port) + ".sock";
}

std::unique_ptr<PendingServer> SocketBackend::listen(int peer_domain, int port, size_t) {
    auto path = vchan_socket_path(config_.socket_dir, config_.own_domain, peer_domain, port);
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) {
        QLOG("vchan socket path too long: {}", path);
        return nullptr;
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        QLOG_ERRNO("cannot remove stale vchan socket {}", path);
        return nullptr;
    }
    io::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        QLOG_ERRNO("socket");
        return nullptr;
    }
    if (::bind(fd.get(), addr->get(), addr->size()) != 0 || ::listen(fd.get(), 1) != 0) {
        QLOG_ERRNO("cannot listen on vchan socket {}", path);
        return nullptr;
    }
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return std::make_unique<SocketServer>(std::move(fd), std::move(path), st.st_ino);
}

std::unique_ptr<Channel> SocketBackend::connect(int peer_domain, int port, int timeout_ms) {
    auto path = vchan_socket_path(config_.socket_dir, peer_domain, config_.own_domain, port);
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) {
        QLOG("vchan socket path too long: {}", path);
        return nullptr;
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    // The server appears once its side learned the port (usually within a
    // millisecond), but a peer that never serves it must not cost CPU for the
    // whole timeout: retry often at first, then back off exponentially to
    // kMaxConnectPause. (An inotify watch on the directory was tried: closing
    // an inotify instance costs ~10 ms in the kernel, more than it saves.)
    auto pause = kFirstConnectPause;
    auto steady_until = Clock::now() + kSteadyConnectWindow;
    for (;;) {
        io::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) {
            QLOG_ERRNO("socket");
            return nullptr;
        }
        if (::connect(fd.get(), addr->get(), addr->size()) == 0)
            return make_socket_channel(std::move(fd));
        int err = errno;
        if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN && err != EINTR) {
            QLOG_ERRNO("cannot connect to vchan socket {}", path);
            return nullptr;
        }
        if (timeout_ms >= 0 && remaining_ms(deadline, timeout_ms) == 0) {
            QLOG("timeout connecting to vchan socket {}", path);
            return nullptr;
        }
        auto left = timeout_ms < 0 ? kMaxConnectPause
                                   : std::chrono::microseconds(std::chrono::milliseconds(
                                         remaining_ms(deadline, timeout_ms)));
        std::this_thread::sleep_for(std::min(pause, left));
        if (Clock::now() >= steady_until) pause = std::min(pause * 2, kMaxConnectPause);
    }
}

std::unique_ptr<Channel> make_socket_channel(io::Fd socket) {
    return std::make_unique<SocketChannel>(std::move(socket));
}

} // namespace qrexec::transport
