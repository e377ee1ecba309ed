// A stand-in for Xen's libxenvchan and the few libxenstore calls the Xen
// transport uses, for tests on machines without a hypervisor. It is compiled
// against the real headers (libxenvchan.h, xenstore.h), so the compiler checks
// that it offers the same C API the real libraries do.
//
// How it plays Xen (DEVELOPERS.md "Xen stand-in"):
// * The local domain id is $VCHAN_DOMAIN (xenstore "domid"); the directory
//   $VCHAN_SOCKET_DIR plays xenstore for the vchan keys: the server's
//   /local/domain/<srv>/data/vchan/<cli>/<port> exists while the socket
//   vchan.<srv>.<cli>.<port>.sock exists (the vchan-socket convention, so the
//   test suites' emulated peers, which speak vchan-socket, can be the other end).
// * The "rings" are bounded: at most `ring` unread bytes in flight per direction
//   (SIOCOUTQ), at most `ring` bytes taken from the socket into the local read
//   buffer. fd_for_select is an epoll fd that becomes readable on an "event":
//   data arrived (while the read buffer has room), the client connected, or,
//   while sent bytes are unread, a 1 ms tick standing in for the peer's
//   "I have read" notification. libxenvchan_wait consumes the event.
// * Watches fire once on registration and then on a 1 ms tick (xenstore allows
//   spurious watch events; callers re-read the key).
extern "C" {
#include <libxenvchan.h>
#include <xenstore.h>
}

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <string>
#include <vector>

namespace {

constexpr size_t kClientRing = 65536; // the client cannot learn the server's sizes here
constexpr size_t kMinRing = 1024;
constexpr long kTickNs = 1000000;
constexpr int kConnectAttempts = 5000; // 1 ms apart

int own_domain() {
    const char* domain = std::getenv("VCHAN_DOMAIN");
    return domain ? std::atoi(domain) : 0;
}

std::string socket_dir() {
    const char* dir = std::getenv("VCHAN_SOCKET_DIR");
    return dir ? dir : "/var/run/vchan";
}

std::string socket_path(int server, int client, int port) {
    return socket_dir() + "/vchan." + std::to_string(server) + "." + std::to_string(client) + "." +
           std::to_string(port) + ".sock";
}

size_t ring_size(size_t minimum) {
    size_t size = kMinRing;
    while (size < minimum)
        size <<= 1;
    return size;
}

// Parses "<prefix><a>/data/vchan/<b>/<c><suffix>" style paths: every '%' in
// `pattern` is one decimal integer; the whole path must match.
bool match_path(const std::string& path, const char* pattern, std::vector<int>& out) {
    size_t i = 0;
    for (const char* p = pattern; *p; ++p) {
        if (*p != '%') {
            if (i >= path.size() || path[i] != *p) return false;
            ++i;
            continue;
        }
        size_t start = i;
        while (i < path.size() && path[i] >= '0' && path[i] <= '9' && i - start < 9)
            ++i;
        if (i == start) return false;
        out.push_back(std::atoi(path.substr(start, i - start).c_str()));
    }
    return i == path.size();
}

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

void arm_tick(int timer, bool on) {
    itimerspec spec{};
    if (on) spec.it_value.tv_nsec = spec.it_interval.tv_nsec = kTickNs;
    ::timerfd_settime(timer, 0, &spec, nullptr);
}

void drain_tick(int timer) {
    uint64_t expirations;
    while (::read(timer, &expirations, sizeof expirations) > 0) {
    }
}

// The handle: the real struct first (the C type callers hold), our state after.
struct Vchan {
    libxenvchan base{};
    bool is_server = false;
    size_t write_ring = kClientRing;
    size_t read_ring = kClientRing;
    int listener = -1;
    int conn = -1;
    int event = -1; // epoll fd: fd_for_select
    int tick = -1;
    bool conn_watched = false;
    bool peer_closed = false;  // read EOF: what arrived before it is still in inbox
    bool write_failed = false; // the peer stopped reading; our writes fail, reads go on
    std::string path;          // server: our socket file, unlinked at close if still ours
    ino_t inode = 0;
    std::deque<char> inbox;
};

Vchan* state(libxenvchan* ctrl) {
    return reinterpret_cast<Vchan*>(ctrl);
}

void watch_conn(Vchan* v, bool on) {
    if (v->conn < 0 || on == v->conn_watched) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = v->conn;
    ::epoll_ctl(v->event, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, v->conn, &ev);
    v->conn_watched = on;
}

void adopt_connection(Vchan* v, int fd) {
    v->conn = fd;
    int big = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    watch_conn(v, true);
}

void try_accept(Vchan* v) {
    if (v->conn >= 0 || v->listener < 0) return;
    int fd = ::accept4(v->listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    ::epoll_ctl(v->event, EPOLL_CTL_DEL, v->listener, nullptr);
    ::close(v->listener);
    v->listener = -1;
    adopt_connection(v, fd);
}

// Moves bytes from the socket into the bounded read buffer.
void fill(Vchan* v) {
    if (v->conn < 0 || v->peer_closed) return;
    char chunk[16384];
    while (v->inbox.size() < v->read_ring) {
        size_t room = std::min(sizeof chunk, v->read_ring - v->inbox.size());
        ssize_t n = ::recv(v->conn, chunk, room, MSG_DONTWAIT);
        if (n > 0) {
            v->inbox.insert(v->inbox.end(), chunk, chunk + n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        v->peer_closed = true;
        break;
    }
    // A full ring stops the peer in Xen; here it stops "data arrived" events.
    watch_conn(v, !v->peer_closed && v->inbox.size() < v->read_ring);
}

int unread_sent_bytes(Vchan* v) {
    int queued = 0;
    if (::ioctl(v->conn, SIOCOUTQ, &queued) != 0) return 0;
    return queued;
}

void consume_event(Vchan* v) {
    drain_tick(v->tick);
    if (v->conn >= 0 && unread_sent_bytes(v) == 0) arm_tick(v->tick, false);
    try_accept(v);
    fill(v);
}

int block_for_event(Vchan* v) {
    epoll_event ev;
    for (;;) {
        int n = ::epoll_wait(v->event, &ev, 1, -1);
        if (n >= 0) break;
        if (errno != EINTR) return -1;
    }
    consume_event(v);
    return 0;
}

int space(Vchan* v) {
    if (v->conn < 0) return 0;
    int queued = unread_sent_bytes(v);
    size_t used = static_cast<size_t>(std::max(queued, 0));
    // While the peer has unread bytes, tick so a blocked writer re-checks.
    arm_tick(v->tick, used > 0);
    return used >= v->write_ring ? 0 : static_cast<int>(v->write_ring - used);
}

int connected_state(Vchan* v) {
    if (v->conn < 0) {
        try_accept(v);
        if (v->conn < 0) return 2;
    }
    fill(v);
    return v->peer_closed ? 0 : 1;
}

Vchan* new_handle() {
    auto* v = new (std::nothrow) Vchan;
    if (!v) return nullptr;
    v->event = ::epoll_create1(EPOLL_CLOEXEC);
    v->tick = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (v->event < 0 || v->tick < 0) {
        libxenvchan_close(&v->base);
        return nullptr;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = v->tick;
    ::epoll_ctl(v->event, EPOLL_CTL_ADD, v->tick, &ev);
    return v;
}

bool fill_address(const std::string& path, sockaddr_un& addr) {
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return false;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

// Xen publishes a server's keys once its rings are ready; a UNIX socket file
// exists a moment before listen(). A bounded retry closes that gap.
int connect_published(const sockaddr_un& addr) {
    for (int attempt = 0;; ++attempt) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
        int err = errno;
        ::close(fd);
        if ((err != ECONNREFUSED && err != EINTR) || attempt >= kConnectAttempts) {
            errno = err;
            return -1;
        }
        timespec pause{0, 1000000};
        ::nanosleep(&pause, nullptr);
    }
}

// --- xenstore -------------------------------------------------------------

struct Watch {
    std::string path;
    std::string token;
};

std::string absolute(int own, const char* path) {
    if (path[0] == '/') return path;
    return "/local/domain/" + std::to_string(own) + "/" + path;
}

// Returns a malloc'd copy (xenstore's callers free() what it returns).
char* dup_value(const std::string& value, unsigned int* len) {
    char* out = static_cast<char*>(std::malloc(value.size() + 1));
    if (!out) return nullptr;
    std::memcpy(out, value.c_str(), value.size() + 1);
    if (len) *len = static_cast<unsigned int>(value.size());
    return out;
}

} // namespace

struct xs_handle {
    int own = 0;
    int tick = -1;
    std::vector<Watch> watches;
    std::deque<Watch> fired;
};

extern "C" {

// --- libxenvchan ------------------------------------------------------------

struct libxenvchan* libxenvchan_server_init(struct xentoollog_logger*, int domain,
                                            const char* xs_path, size_t read_min,
                                            size_t write_min) {
    std::vector<int> ids;
    if (!match_path(xs_path, "data/vchan/%/%", ids) || ids[0] != domain) {
        std::fprintf(stderr, "xen stand-in: unsupported server path %s\n", xs_path);
        errno = EINVAL;
        return nullptr;
    }
    Vchan* v = new_handle();
    if (!v) return nullptr;
    v->is_server = true;
    v->read_ring = ring_size(read_min);
    v->write_ring = ring_size(write_min);
    v->path = socket_path(own_domain(), domain, ids[1]);
    sockaddr_un addr{};
    if (!fill_address(v->path, addr) || (::unlink(v->path.c_str()) != 0 && errno != ENOENT)) {
        libxenvchan_close(&v->base);
        return nullptr;
    }
    v->listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (v->listener < 0 || ::bind(v->listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) ||
        ::listen(v->listener, 1)) {
        libxenvchan_close(&v->base);
        return nullptr;
    }
    struct stat st {};
    ::lstat(v->path.c_str(), &st);
    v->inode = st.st_ino;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = v->listener;
    ::epoll_ctl(v->event, EPOLL_CTL_ADD, v->listener, &ev);
    return &v->base;
}

struct libxenvchan* libxenvchan_client_init(struct xentoollog_logger*, int domain,
                                            const char* xs_path) {
    std::vector<int> ids;
    if (!match_path(xs_path, "/local/domain/%/data/vchan/%/%", ids) || ids[0] != domain ||
        ids[1] != own_domain()) {
        std::fprintf(stderr, "xen stand-in: unsupported client path %s\n", xs_path);
        errno = EINVAL;
        return nullptr;
    }
    sockaddr_un addr{};
    if (!fill_address(socket_path(domain, ids[1], ids[2]), addr)) {
        errno = ENAMETOOLONG;
        return nullptr;
    }
    Vchan* v = new_handle();
    if (!v) return nullptr;
    int fd = connect_published(addr);
    if (fd < 0) {
        int err = errno;
        libxenvchan_close(&v->base);
        errno = err;
        return nullptr;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    adopt_connection(v, fd);
    return &v->base;
}

void libxenvchan_close(struct libxenvchan* ctrl) {
    if (!ctrl) return;
    Vchan* v = state(ctrl);
    for (int fd : {v->listener, v->conn, v->event, v->tick})
        if (fd >= 0) ::close(fd);
    struct stat st {};
    if (!v->path.empty() && ::lstat(v->path.c_str(), &st) == 0 && st.st_ino == v->inode)
        ::unlink(v->path.c_str());
    delete v;
}

int libxenvchan_read(struct libxenvchan* ctrl, void* data, size_t size) {
    Vchan* v = state(ctrl);
    fill(v);
    while (v->inbox.empty() && !v->peer_closed)
        if (block_for_event(v) < 0) return -1;
    if (v->inbox.empty()) return -1;
    size_t n = std::min(size, v->inbox.size());
    std::copy_n(v->inbox.begin(), n, static_cast<char*>(data));
    v->inbox.erase(v->inbox.begin(), v->inbox.begin() + static_cast<long>(n));
    fill(v);
    return static_cast<int>(n);
}

int libxenvchan_recv(struct libxenvchan* ctrl, void* data, size_t size) {
    Vchan* v = state(ctrl);
    if (size > v->read_ring) return -1;
    fill(v);
    while (v->inbox.size() < size && !v->peer_closed)
        if (block_for_event(v) < 0) return -1;
    if (v->inbox.size() < size) return -1;
    return libxenvchan_read(ctrl, data, size);
}

int libxenvchan_write(struct libxenvchan* ctrl, const void* data, size_t size) {
    Vchan* v = state(ctrl);
    if (v->write_failed) return -1;
    int free_bytes;
    while ((free_bytes = space(v)) == 0) {
        if (connected_state(v) != 1) return -1;
        if (block_for_event(v) < 0) return -1;
    }
    if (connected_state(v) == 0) return -1;
    size_t n = std::min(size, static_cast<size_t>(free_bytes));
    for (;;) {
        ssize_t sent = ::send(v->conn, data, n, MSG_NOSIGNAL);
        if (sent >= 0) return static_cast<int>(sent);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            pollfd p{v->conn, POLLOUT, 0};
            ::poll(&p, 1, -1);
            continue;
        }
        // Like Xen's ring: a closed peer fails our writes, but what it wrote before
        // closing stays readable.
        v->write_failed = true;
        return -1;
    }
}

int libxenvchan_send(struct libxenvchan* ctrl, const void* data, size_t size) {
    Vchan* v = state(ctrl);
    if (size > v->write_ring) return -1;
    while (static_cast<size_t>(space(v)) < size) {
        if (connected_state(v) != 1) return -1;
        if (block_for_event(v) < 0) return -1;
    }
    size_t done = 0;
    while (done < size) {
        int n = libxenvchan_write(ctrl, static_cast<const char*>(data) + done, size - done);
        if (n < 0) return -1;
        done += static_cast<size_t>(n);
    }
    return static_cast<int>(size);
}

int libxenvchan_wait(struct libxenvchan* ctrl) {
    return block_for_event(state(ctrl));
}

int libxenvchan_fd_for_select(struct libxenvchan* ctrl) {
    return state(ctrl)->event;
}

int libxenvchan_is_open(struct libxenvchan* ctrl) {
    return connected_state(state(ctrl));
}

int libxenvchan_data_ready(struct libxenvchan* ctrl) {
    Vchan* v = state(ctrl);
    fill(v);
    return static_cast<int>(v->inbox.size());
}

int libxenvchan_buffer_space(struct libxenvchan* ctrl) {
    return space(state(ctrl));
}

// --- xenstore (the calls the transport uses) --------------------------------

struct xs_handle* xs_open(unsigned long) {
    auto* h = new (std::nothrow) xs_handle;
    if (!h) return nullptr;
    h->own = own_domain();
    h->tick = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (h->tick < 0) {
        delete h;
        return nullptr;
    }
    return h;
}

void xs_close(struct xs_handle* h) {
    if (!h) return;
    ::close(h->tick);
    delete h;
}

void* xs_read(struct xs_handle* h, xs_transaction_t, const char* path, unsigned int* len) {
    std::string full = absolute(h->own, path);
    std::vector<int> ids;
    if (full == "/local/domain/" + std::to_string(h->own) + "/domid")
        return dup_value(std::to_string(h->own), len);
    if (match_path(full, "/local/domain/%/data/vchan/%/%/event-channel", ids) ||
        match_path(full, "/local/domain/%/data/vchan/%/%/ring-ref", ids)) {
        if (path_exists(socket_path(ids[0], ids[1], ids[2]))) return dup_value("1", len);
    }
    errno = ENOENT;
    return nullptr;
}

bool xs_rm(struct xs_handle* h, xs_transaction_t, const char* path) {
    std::string full = absolute(h->own, path);
    std::vector<int> ids;
    if (!match_path(full, "/local/domain/%/data/vchan/%/%", ids) || ids[0] != h->own) {
        errno = EACCES;
        return false;
    }
    if (::unlink(socket_path(ids[0], ids[1], ids[2]).c_str()) != 0 && errno != ENOENT) return false;
    return true;
}

bool xs_watch(struct xs_handle* h, const char* path, const char* token) {
    h->watches.push_back({absolute(h->own, path), token});
    h->fired.push_back(h->watches.back()); // a watch fires once when registered
    arm_tick(h->tick, true);
    return true;
}

bool xs_unwatch(struct xs_handle* h, const char* path, const char* token) {
    std::string full = absolute(h->own, path);
    std::erase_if(h->watches, [&](const Watch& w) { return w.path == full && w.token == token; });
    std::erase_if(h->fired, [&](const Watch& w) { return w.path == full && w.token == token; });
    if (h->watches.empty()) arm_tick(h->tick, false);
    return true;
}

int xs_fileno(struct xs_handle* h) {
    return h->tick;
}

char** xs_check_watch(struct xs_handle* h) {
    uint64_t expirations;
    if (::read(h->tick, &expirations, sizeof expirations) > 0)
        for (const auto& w : h->watches)
            h->fired.push_back(w);
    if (h->fired.empty()) {
        errno = EAGAIN;
        return nullptr;
    }
    Watch w = h->fired.front();
    h->fired.pop_front();
    // One block: the pointer array, then the strings (callers free() it once).
    size_t bytes = 2 * sizeof(char*) + w.path.size() + 1 + w.token.size() + 1;
    auto** out = static_cast<char**>(std::malloc(bytes));
    if (!out) return nullptr;
    char* strings = reinterpret_cast<char*>(out + 2);
    std::memcpy(strings, w.path.c_str(), w.path.size() + 1);
    std::memcpy(strings + w.path.size() + 1, w.token.c_str(), w.token.size() + 1);
    out[XS_WATCH_PATH] = strings;
    out[XS_WATCH_TOKEN] = strings + w.path.size() + 1;
    return out;
}

} // extern "C"
