#include "transport/xen_backend.h"

#include "io/log.h"
#include "transport/socket_backend.h"

extern "C" {
#include <libxenvchan.h>
#include <xenstore.h>
}

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace qrexec::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kPumpChunk = 65536;
constexpr const char* kWatchToken = "qrexec-vchan";

struct VchanCloser {
    void operator()(libxenvchan* ctrl) const { libxenvchan_close(ctrl); }
};
using VchanHandle = std::unique_ptr<libxenvchan, VchanCloser>;

struct XsCloser {
    void operator()(xs_handle* h) const { xs_close(h); }
};
using XsHandle = std::unique_ptr<xs_handle, XsCloser>;

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

XsHandle open_xenstore() {
    XsHandle xs(xs_open(0));
    if (!xs) QLOG_ERRNO("cannot open xenstore");
    return xs;
}

bool xs_key_exists(xs_handle* xs, const std::string& path) {
    unsigned int len = 0;
    std::unique_ptr<void, FreeDeleter> value(xs_read(xs, XBT_NULL, path.c_str(), &len));
    return value != nullptr;
}

int remaining_ms(Clock::time_point deadline, int timeout_ms) {
    if (timeout_ms < 0) return -1;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::max<long long>(0, left));
}

bool event_pending(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

// Moves bytes between the vchan and the pump's end of the socketpair until
// either side is finished (see xen_backend.h).
class Pump {
  public:
    Pump(VchanHandle vchan, io::Fd local) : vchan_(std::move(vchan)), local_(std::move(local)) {
        io::set_nonblocking(local_.get());
        // The thread must never take a signal meant for the process' own loop.
        sigset_t all, previous;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &previous);
        thread_ = std::thread([this] { run(); });
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    }
    Pump(const Pump&) = delete;
    Pump& operator=(const Pump&) = delete;
    // Called after the caller closed its end: the thread flushes and ends.
    ~Pump() { thread_.join(); }

  private:
    struct Buffer {
        std::vector<std::byte> data = std::vector<std::byte>(kPumpChunk);
        size_t begin = 0;
        size_t end = 0;
        bool empty() const { return begin == end; }
        std::byte* pending() { return data.data() + begin; }
        size_t pending_size() const { return end - begin; }
        void refill(size_t n) {
            begin = 0;
            end = n;
        }
    };

    void run() {
        for (;;) {
            bool progress = vchan_to_local();
            progress = local_to_vchan() || progress;
            if (vchan_gone_ && to_local_.empty()) {
                // Everything the peer sent was handed over: EOF for the caller, and
                // its writes fail from now on, like writes to a closed vchan.
                ::shutdown(local_.get(), SHUT_RDWR);
                return;
            }
            if (local_eof_ && to_vchan_.empty()) return;
            if (!progress && !wait_for_event()) return;
        }
    }

    bool vchan_to_local() {
        bool progress = false;
        if (to_local_.empty() && !vchan_gone_) {
            // is_open before data_ready: the peer may write its last bytes and close between.
            int open = libxenvchan_is_open(vchan_.get());
            int ready = libxenvchan_data_ready(vchan_.get());
            if (ready > 0) {
                int n = libxenvchan_read(vchan_.get(), to_local_.data.data(),
                                         std::min(static_cast<size_t>(ready), kPumpChunk));
                if (n > 0) {
                    to_local_.refill(static_cast<size_t>(n));
                    progress = true;
                } else {
                    vchan_gone_ = true;
                }
            } else if (open == 0) {
                vchan_gone_ = true;
            }
        }
        if (local_write_failed_) to_local_.refill(0); // keep the vchan drained, drop it
        if (!to_local_.empty()) {
            ssize_t n = ::send(local_.get(), to_local_.pending(), to_local_.pending_size(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                to_local_.begin += static_cast<size_t>(n);
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                // The caller closed its end: nobody reads this any more. What it
                // wrote before closing is still queued for us, so its EOF comes
                // from recv, not from here.
                to_local_.refill(0);
                local_write_failed_ = true;
            }
        }
        return progress;
    }

    bool local_to_vchan() {
        bool progress = false;
        if (to_vchan_.empty() && !local_eof_) {
            ssize_t n = ::recv(local_.get(), to_vchan_.data.data(), kPumpChunk, MSG_DONTWAIT);
            if (n > 0) {
                to_vchan_.refill(static_cast<size_t>(n));
                progress = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                local_eof_ = true;
            }
        }
        if (!to_vchan_.empty()) {
            if (vchan_gone_ || write_failed_) {
                to_vchan_.refill(0); // nobody reads it any more
                return progress;
            }
            int space = libxenvchan_buffer_space(vchan_.get());
            if (space > 0) {
                int n = libxenvchan_write(
                    vchan_.get(), to_vchan_.pending(),
                    std::min(static_cast<size_t>(space), to_vchan_.pending_size()));
                if (n > 0) {
                    to_vchan_.begin += static_cast<size_t>(n);
                    progress = true;
                } else if (n < 0) {
                    // The peer closed: our writes are over, but what it sent before
                    // closing may still be unread; vchan_to_local drains it to the end.
                    write_failed_ = true;
                    to_vchan_.refill(0);
                }
            }
        }
        return progress;
    }

    // Sleeps until the vchan signals an event or the caller's end is ready.
    bool wait_for_event() {
        short local_events = 0;
        if (to_vchan_.empty() && !local_eof_) local_events |= POLLIN;
        if (!to_local_.empty()) local_events |= POLLOUT;
        std::array<pollfd, 2> fds{{{libxenvchan_fd_for_select(vchan_.get()), POLLIN, 0},
                                   {local_.get(), local_events, 0}}};
        if (::poll(fds.data(), fds.size(), -1) < 0) return errno == EINTR;
        // The event is consumed here; data_ready() is checked before every sleep.
        if ((fds[0].revents & POLLIN) && libxenvchan_wait(vchan_.get()) < 0) vchan_gone_ = true;
        return true;
    }

    VchanHandle vchan_;
    io::Fd local_;
    Buffer to_local_;
    Buffer to_vchan_;
    bool vchan_gone_ = false;         // nothing more to read from the vchan
    bool write_failed_ = false;       // writes to the vchan fail (peer closed)
    bool local_eof_ = false;          // the caller closed its end and we read it all
    bool local_write_failed_ = false; // the caller no longer reads what the vchan sends
    std::thread thread_;
};

class XenChannel final : public Channel {
  public:
    explicit XenChannel(VchanHandle vchan) {
        auto pair = io::make_socketpair();
        pump_ = std::make_unique<Pump>(std::move(vchan), std::move(pair.second));
        caller_ = make_socket_channel(std::move(pair.first));
    }
    ~XenChannel() override {
        caller_.reset(); // the pump sees EOF, flushes, closes the vchan
        pump_.reset();
    }
    int fd() const override { return caller_->fd(); }
    ssize_t read(std::span<std::byte> buffer) override { return caller_->read(buffer); }
    ssize_t writev(const iovec* iov, int count) override { return caller_->writev(iov, count); }

  private:
    std::unique_ptr<Pump> pump_;
    std::unique_ptr<Channel> caller_;
};

class XenPendingServer final : public PendingServer {
  public:
    XenPendingServer(VchanHandle vchan, XsHandle xs, std::string xs_path)
        : vchan_(std::move(vchan)), xs_(std::move(xs)), xs_path_(std::move(xs_path)) {}
    ~XenPendingServer() override { remove_xenstore_entry(); }
    int fd() const override { return libxenvchan_fd_for_select(vchan_.get()); }

    std::unique_ptr<Channel> accept() override {
        if (event_pending(fd()) && libxenvchan_wait(vchan_.get()) < 0)
            throw std::runtime_error("vchan wait failed on " + xs_path_);
        if (libxenvchan_is_open(vchan_.get()) == 2) return nullptr;
        // Connected (or connected and already closed: its data is still readable).
        remove_xenstore_entry();
        return std::make_unique<XenChannel>(std::move(vchan_));
    }

  private:
    void remove_xenstore_entry() {
        if (!xs_ || removed_) return;
        removed_ = true;
        if (!xs_rm(xs_.get(), XBT_NULL, xs_path_.c_str()))
            QLOG_ERRNO("cannot remove xenstore entry {}", xs_path_);
    }

    VchanHandle vchan_;
    XsHandle xs_;
    std::string xs_path_;
    bool removed_ = false;
};

void drain_watch_events(xs_handle* xs) {
    for (;;) {
        std::unique_ptr<char*, FreeDeleter> event(xs_check_watch(xs));
        if (!event) return;
    }
}

// Waits for the server's event-channel key, with a watch so no busy polling.
bool wait_for_server(xs_handle* xs, const std::string& base, int timeout_ms) {
    std::string key = base + "/event-channel";
    if (!xs_watch(xs, key.c_str(), kWatchToken)) {
        QLOG_ERRNO("cannot watch xenstore {}", key);
        return false;
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    bool found = false;
    for (;;) {
        if (xs_key_exists(xs, key)) {
            found = true;
            break;
        }
        int left = remaining_ms(deadline, timeout_ms);
        if (left == 0) break;
        pollfd p{xs_fileno(xs), POLLIN, 0};
        if (::poll(&p, 1, left) < 0 && errno != EINTR) break;
        drain_watch_events(xs);
    }
    xs_unwatch(xs, key.c_str(), kWatchToken);
    return found;
}

} // namespace

std::string xen_server_path(int peer_domain, int port) {
    return "data/vchan/" + std::to_string(peer_domain) + "/" + std::to_string(port);
}

std::string xen_client_path(int server_domain, int own_domain, int port) {
    return "/local/domain/" + std::to_string(server_domain) + "/" +
           xen_server_path(own_domain, port);
}

XenBackend::XenBackend() {
    auto xs = open_xenstore();
    if (!xs) throw std::runtime_error("cannot open xenstore");
    unsigned int len = 0;
    std::unique_ptr<char, FreeDeleter> value(
        static_cast<char*>(xs_read(xs.get(), XBT_NULL, "domid", &len)));
    if (!value) throw std::runtime_error("cannot read the local domain id from xenstore");
    std::string text(value.get(), len);
    char* end = nullptr;
    long id = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || id < 0 || id > 0x7fef)
        throw std::runtime_error("bad domain id in xenstore: " + text);
    own_domain_ = static_cast<int>(id);
}

std::unique_ptr<PendingServer> XenBackend::listen(int peer_domain, int port, size_t ring_size) {
    auto xs = open_xenstore();
    if (!xs) return nullptr;
    auto path = xen_server_path(peer_domain, port);
    VchanHandle vchan(
        libxenvchan_server_init(nullptr, peer_domain, path.c_str(), ring_size, ring_size));
    if (!vchan) {
        QLOG_ERRNO("cannot create vchan server for domain {} port {}", peer_domain, port);
        return nullptr;
    }
    return std::make_unique<XenPendingServer>(std::move(vchan), std::move(xs), std::move(path));
}

std::unique_ptr<Channel> XenBackend::connect(int peer_domain, int port, int timeout_ms) {
    if (peer_domain == own_domain_) {
        QLOG("refusing a vchan to our own domain {} (port {})", peer_domain, port);
        return nullptr;
    }
    auto xs = open_xenstore();
    if (!xs) return nullptr;
    auto path = xen_client_path(peer_domain, own_domain_, port);
    if (!wait_for_server(xs.get(), path, timeout_ms)) {
        QLOG("timeout waiting for the vchan server of domain {} port {}", peer_domain, port);
        return nullptr;
    }
    VchanHandle vchan(libxenvchan_client_init(nullptr, peer_domain, path.c_str()));
    if (!vchan) {
        QLOG_ERRNO("cannot connect vchan to domain {} port {}", peer_domain, port);
        return nullptr;
    }
    return std::make_unique<XenChannel>(std::move(vchan));
}

} // namespace qrexec::transport
