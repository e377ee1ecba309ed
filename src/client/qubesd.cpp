#include "client/qubesd.h"

#include "io/fd.h"
#include "io/log.h"
#include "services/prepare.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace qrexec::client {
namespace {
constexpr size_t kMaxReply = 65535;
constexpr int kReplyTimeoutMs = 5 * 60 * 1000; // starting a VM can take minutes
} // namespace

std::string qubesd_socket_path() {
    const char* env = std::getenv("QREXEC_QUBESD_SOCKET");
    return env && *env ? env : kDefaultQubesdSocket;
}

std::optional<QubesdReply> qubesd_call(std::string_view method, std::string_view dest,
                                       std::string_view payload, std::string_view arg) {
    std::string path = qubesd_socket_path();
    std::string error;
    io::Fd fd = services::connect_unix_socket(path, &error);
    if (!fd) {
        QLOG("Cannot connect to qubesd: {}", error);
        return std::nullopt;
    }
    std::string request = qubesd_request(method, arg, dest, payload);
    if (!io::write_all(fd.get(), request) || shutdown(fd.get(), SHUT_WR) != 0) {
        QLOG_ERRNO("Failed to send {} to qubesd", method);
        return std::nullopt;
    }
    std::string reply;
    char buffer[4096];
    for (;;) {
        if (!io::wait_readable(fd.get(), kReplyTimeoutMs)) {
            QLOG("Timeout waiting for qubesd's answer to {}", method);
            return std::nullopt;
        }
        ssize_t n = read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            QLOG_ERRNO("Failed to read qubesd's answer to {}", method);
            return std::nullopt;
        }
        if (n == 0) break;
        reply.append(buffer, static_cast<size_t>(n));
        if (reply.size() > kMaxReply) {
            QLOG("qubesd's answer to {} is too long", method);
            return std::nullopt;
        }
    }
    QubesdReply result = protocol::parse_qubesd_reply(reply);
    if (!result.malformed) return result;
    QLOG("Malformed answer from qubesd to {}", method);
    return std::nullopt;
}

} // namespace qrexec::client
