#include "policy/qubesd.h"

#include "io/fd.h"
#include "io/unix_address.h"
#include "protocol/qubesd.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qrexec::policy {

std::optional<std::string> qubesd_call(const std::string& socket_path, const std::string& method,
                                       const std::string& dest, const std::string& payload,
                                       std::string* error, size_t max_reply) {
    auto fail = [&](std::string what) -> std::optional<std::string> {
        if (error) *error = "qubesd call " + method + " failed: " + what;
        return std::nullopt;
    };
    io::Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock) return fail(std::string("socket: ") + std::strerror(errno));
    auto addr = io::UnixAddress::from_path(socket_path);
    if (!addr) return fail("socket path too long");
    if (::connect(sock.get(), addr->get(), addr->size()) != 0)
        return fail("connect " + socket_path + ": " + std::strerror(errno));
    auto plus = method.find('+');
    std::string request =
        plus == std::string::npos
            ? protocol::qubesd_request(method, "", dest, payload)
            : protocol::qubesd_request(std::string_view(method).substr(0, plus),
                                       std::string_view(method).substr(plus + 1), dest, payload);
    if (!io::write_all(sock.get(), request))
        return fail(std::string("write: ") + std::strerror(errno));
    ::shutdown(sock.get(), SHUT_WR);
    std::string reply;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(sock.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(std::string("read: ") + std::strerror(errno));
        if (n == 0) break;
        reply.append(buf, static_cast<size_t>(n));
        if (reply.size() > max_reply) return fail("reply too large");
    }
    auto parsed = protocol::parse_qubesd_reply(reply);
    if (!parsed.ok) return fail(parsed.malformed ? "malformed reply" : parsed.exception_type);
    return parsed.value;
}

} // namespace qrexec::policy
