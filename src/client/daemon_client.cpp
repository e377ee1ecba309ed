#include "client/daemon_client.h"

#include "io/log.h"
#include "protocol/frame.h"
#include "services/prepare.h"

#include <cerrno>

namespace qrexec::client {

using namespace qrexec::protocol;

namespace {
constexpr int kHandshakeTimeoutMs = 10000; // a live daemon answers at once
} // namespace

std::string daemon_socket_path(const std::string& socket_dir, const std::string& name) {
    return socket_dir + "/qrexec." + name;
}

io::Fd connect_to_daemon(const std::string& socket_dir, const std::string& name,
                         int* connect_errno) {
    std::string path = daemon_socket_path(socket_dir, name);
    std::string error;
    int err = 0;
    io::Fd fd = services::connect_unix_socket(path, &error, &err);
    if (connect_errno) *connect_errno = err;
    if (!fd) {
        QLOG("Failed to connect to the qrexec daemon socket: {}", error);
        return {};
    }
    // The daemon speaks first (HELLO{3}); it must be at least version 3.
    std::array<std::byte, kHeaderSize + 4> hello{};
    if (!io::wait_readable(fd.get(), kHandshakeTimeoutMs) ||
        io::read_all(fd.get(), hello) != static_cast<ssize_t>(hello.size())) {
        QLOG("Failed to receive the daemon's HELLO from {}", path);
        return {};
    }
    auto untrusted_hello = next_frame(std::span<const std::byte>(hello), 4);
    auto checked = check_hello(untrusted_hello.header.value_or(Header{}),
                               untrusted_hello.untrusted_payload, kLocalSocketHello);
    if (!checked.version) {
        QLOG("Invalid HELLO from the qrexec daemon {}: {}", path, checked.error);
        return {};
    }
    auto reply = encode_frame(MSG_HELLO, encode_hello(kClientProtocolVersion));
    if (!io::write_all(fd.get(), reply)) {
        QLOG_ERRNO("Failed to send HELLO to the qrexec daemon {}", path);
        return {};
    }
    return fd;
}

bool send_daemon_request(int fd, uint32_t type, ExecParams params,
                         std::span<const std::byte> body) {
    auto frame = encode_frame(type, encode_exec_params(params, body));
    if (!io::write_all(fd, frame)) {
        QLOG_ERRNO("Failed to send the request to the qrexec daemon");
        return false;
    }
    return true;
}

std::optional<ExecParams> read_daemon_reply(int fd, uint32_t type) {
    std::array<std::byte, kHeaderSize + kExecParamsSize> reply{};
    ssize_t n = io::read_all(fd, reply);
    if (n != static_cast<ssize_t>(reply.size())) {
        QLOG("Failed to read the qrexec daemon's reply");
        return std::nullopt;
    }
    auto header = decode_header(std::span(reply).first<kHeaderSize>());
    if (header.type != type || header.len != kExecParamsSize) {
        QLOG("Invalid reply from the qrexec daemon: type 0x{:x}, len {}", header.type, header.len);
        return std::nullopt;
    }
    return decode_exec_params(std::span(reply).subspan(kHeaderSize));
}

Ident ident_body(const std::string& request_id) {
    return make_ident(request_id);
}

} // namespace qrexec::client
