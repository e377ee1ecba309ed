// vchan-socket emulation, wire-compatible with upstream's libvchan-socket
// (VCHAN.md §2) but without its I/O thread and rings: the channel *is* the
// UNIX socket. Path: <dir>/vchan.<server>.<client>.<port>.sock.
#pragma once

#include "transport/vchan.h"

#include <string>

namespace qrexec::transport {

struct SocketBackendConfig {
    int own_domain = 0;
    std::string socket_dir = "/var/run/vchan";
    static SocketBackendConfig from_environment();
};

std::string vchan_socket_path(const std::string& dir, int server_domain, int client_domain,
                              int port);

class SocketBackend final : public Backend {
  public:
    explicit SocketBackend(SocketBackendConfig config) : config_(std::move(config)) {}
    int own_domain() const override { return config_.own_domain; }
    std::unique_ptr<PendingServer> listen(int peer_domain, int port, size_t ring_size) override;
    std::unique_ptr<Channel> connect(int peer_domain, int port, int timeout_ms) override;

  private:
    SocketBackendConfig config_;
};

// A channel over an already-connected stream socket (also used by tests).
std::unique_ptr<Channel> make_socket_channel(io::Fd socket);

} // namespace qrexec::transport
