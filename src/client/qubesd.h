// Minimal qubesd Admin API calls over its UNIX socket (DAEMON.md §5.5):
// request "<method>+<arg> dom0 name|keyword <dest>\0<payload>", reply to EOF.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::client {

inline constexpr const char* kDefaultQubesdSocket = "/run/qubesd.sock";

// $QREXEC_QUBESD_SOCKET (tests) or /run/qubesd.sock.
std::string qubesd_socket_path();

struct QubesdReply {
    bool ok = false;       // "0\0<value>"
    std::string value;     // success value
    std::string exception; // "2\0<type>\0..." error type
};

// The request bytes (exposed for tests).
std::string qubesd_request(std::string_view method, std::string_view arg, std::string_view dest,
                           std::string_view payload);

// nullopt when the socket cannot be used or the reply is malformed (logged).
std::optional<QubesdReply> qubesd_call(std::string_view method, std::string_view dest,
                                       std::string_view payload = {}, std::string_view arg = {});

} // namespace qrexec::client
