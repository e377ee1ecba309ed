// TCP services: a symlink to /dev/tcp[/HOST[/PORT]] (AGENT.md §4.2).
#pragma once

#include "io/fd.h"

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::services {

// The symlink target that marks a TCP service.
inline constexpr std::string_view kDevTcp = "/dev/tcp";

struct TcpTarget {
    std::string host; // numeric IPv4/IPv6 address
    uint16_t port = 0;
};

// symlink_target: "/dev/tcp", "/dev/tcp/HOST" or "/dev/tcp/HOST/PORT";
// argument: the call's ARG (nullopt when the descriptor had no '+').
std::optional<TcpTarget> parse_tcp_target(std::string_view symlink_target,
                                          const std::optional<std::string>& argument,
                                          std::string* error = nullptr);

// Connects (blocking) to a numeric host; invalid host text or failure -> invalid Fd
// (reason in `error`).
io::Fd connect_tcp(const TcpTarget& target, std::string* error = nullptr);

} // namespace qrexec::services
