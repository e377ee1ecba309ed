// Client side of the qrexec-daemon socket (PROTOCOL.md §4.2, DAEMON.md §4):
// used by qrexec-client and by anything that talks to a daemon like it does.
#pragma once

#include "io/fd.h"
#include "protocol/messages.h"

#include <optional>
#include <span>
#include <string>

namespace qrexec::client {

inline constexpr const char* kDefaultSocketDir = "/var/run/qubes";

// "<socket_dir>/qrexec.<name>" (name: domid, VM name or "uuid:<uuid>").
std::string daemon_socket_path(const std::string& socket_dir, const std::string& name);

// Connects to the daemon socket of `name` and does the HELLO exchange. On failure
// returns an invalid Fd (logged); *connect_errno is the connect() errno (0 when the
// connection succeeded but the handshake failed).
io::Fd connect_to_daemon(const std::string& socket_dir, const std::string& name,
                         int* connect_errno = nullptr);

// Sends one request: header{type, 8 + body} + exec_params + body.
bool send_daemon_request(int fd, uint32_t type, protocol::ExecParams params,
                         std::span<const std::byte> body);

// Reads the daemon's 8-byte answer whose header type must equal `type`.
std::optional<protocol::ExecParams> read_daemon_reply(int fd, uint32_t type);

// The 32-byte zero-filled ident body of SERVICE_CONNECT.
protocol::Ident ident_body(const std::string& request_id);

} // namespace qrexec::client
