// Minimal qubesd Admin API calls over its UNIX socket (DAEMON.md §5.5):
// request "<method>+<arg> dom0 name|keyword <dest>\0<payload>", reply to EOF.
#pragma once

#include "protocol/qubesd.h"

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::client {

using protocol::kDefaultQubesdSocket;
using protocol::qubesd_request;
using protocol::QubesdReply;

// $QREXEC_QUBESD_SOCKET (tests) or /run/qubesd.sock.
std::string qubesd_socket_path();

// nullopt when the socket cannot be used or the reply is malformed (logged).
std::optional<QubesdReply> qubesd_call(std::string_view method, std::string_view dest,
                                       std::string_view payload = {}, std::string_view arg = {});

} // namespace qrexec::client
