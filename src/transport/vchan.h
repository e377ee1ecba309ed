// The vchan abstraction qrexec needs (VCHAN.md §1), reduced to what an event
// loop uses: a connected channel is a non-blocking byte stream with a
// readiness fd. Backends: vchan-socket emulation (socket_backend.h); a Xen
// backend (libxenvchan) can implement the same interface.
#pragma once

#include "io/fd.h"

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace qrexec::transport {

// A connected vchan. read/writev never block; they follow read(2)/writev(2)
// conventions (-1 with errno EAGAIN when nothing can be moved, 0 from read = peer closed).
class Channel {
  public:
    virtual ~Channel() = default;
    virtual int fd() const = 0;
    virtual ssize_t read(std::span<std::byte> buffer) = 0;
    virtual ssize_t writev(const iovec* iov, int count) = 0;
    // Blocking helpers with a deadline, used for handshakes (milliseconds; -1 = forever).
    bool send_all(std::span<const std::byte> data, int timeout_ms);
    // Reads exactly buffer.size() bytes; false on EOF, error or timeout.
    bool recv_all(std::span<std::byte> buffer, int timeout_ms);
};

// A server that waits for its single client.
class PendingServer {
  public:
    virtual ~PendingServer() = default;
    // Readable when the client has arrived.
    virtual int fd() const = 0;
    // Returns the channel once the client connected (nullptr: not yet; throws on error).
    virtual std::unique_ptr<Channel> accept() = 0;
    // Blocks until the client arrives or the timeout passes (-1 = forever).
    std::unique_ptr<Channel> wait_for_client(int timeout_ms);
};

class Backend {
  public:
    virtual ~Backend() = default;
    virtual int own_domain() const = 0;
    // Creates the server synchronously (the peer may connect as soon as this returns).
    virtual std::unique_ptr<PendingServer> listen(int peer_domain, int port, size_t ring_size) = 0;
    // Connects to the server of (peer_domain, port), waiting up to timeout_ms for it
    // to appear (-1 = forever). nullptr on timeout or error (logged).
    virtual std::unique_ptr<Channel> connect(int peer_domain, int port, int timeout_ms) = 0;
};

// The backend selected for this process (today always the socket emulation,
// configured from VCHAN_DOMAIN / VCHAN_SOCKET_DIR).
std::unique_ptr<Backend> default_backend();

} // namespace qrexec::transport
