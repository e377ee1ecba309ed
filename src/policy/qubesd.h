// Minimal qubesd client: `<method>+<arg> dom0 name|keyword <dest>\0<payload>`, then
// shutdown(SHUT_WR), reply read to EOF: "0\0<value>" or "2\0<exception>\0...".
#pragma once

#include <optional>
#include <string>

namespace qrexec::policy {

inline constexpr const char* kQubesdSocket = "/run/qubesd.sock";

// The value after "0\0", or nullopt (*error says why). max_reply bounds the read.
std::optional<std::string> qubesd_call(const std::string& socket_path, const std::string& method,
                                       const std::string& dest, const std::string& payload,
                                       std::string* error, size_t max_reply = 65535);

} // namespace qrexec::policy
