// Decoders for the requests an endpoint receives besides TRIGGERs: what dom0
// sends an agent on its control vchan (PROTOCOL.md §6.1-§6.2), what
// qrexec-client-vm sends its agent (AGENT.md §6) and what a local client sends
// qrexec-daemon on its socket (P§4.2). Pure and total, so they are fuzzed; the
// views they return point into the payload they were given.
#pragma once

#include "protocol/messages.h"

#include <optional>
#include <span>
#include <string_view>

namespace qrexec::protocol {

// ---- dom0 -> agent (control vchan) ----

// EXEC_CMDLINE / JUST_EXEC: params, then the command. Like upstream, the last
// byte counts as NUL whatever it holds and the command ends at the first NUL.
struct ExecRequest {
    ExecParams params;
    std::string_view cmdline;
};
std::optional<ExecRequest> decode_exec_request(std::span<const std::byte> untrusted_payload);

// SERVICE_CONNECT to an agent: params, then the ident of the request it answers
// (same NUL rule as the command above).
struct ServiceConnect {
    ExecParams params;
    std::string_view ident;
};
std::optional<ServiceConnect> decode_service_connect(std::span<const std::byte> untrusted_payload);

// SERVICE_REFUSED: exactly a 32-byte ident; its text up to the first NUL.
std::optional<std::string_view>
decode_service_refused(std::span<const std::byte> untrusted_payload);

// The ident an agent puts in a forwarded qrexec-client-vm request ("SOCKET<fd>"),
// and back. parse_socket_ident accepts only what make_socket_ident makes.
Ident make_socket_ident(int fd);
std::optional<int> parse_socket_ident(std::string_view ident);

// ---- qrexec-client-vm -> agent ----

// Only TRIGGER_SERVICE4 with a non-empty service name area, bounded.
bool is_local_trigger_header(Header header);

// ---- local client -> qrexec-daemon socket ----

// EXEC_CMDLINE / JUST_EXEC / SERVICE_CONNECT with params and a bounded body.
bool is_client_command_header(Header header);
struct ClientCommand {
    uint32_t type = 0;
    ExecParams params;
    std::span<const std::byte> body; // the command (or ident) with its final NUL
    std::string_view text;           // body without the final NUL
};
// Checks the header as above and that the body ends with a NUL.
std::optional<ClientCommand> decode_client_command(Header header,
                                                   std::span<const std::byte> untrusted_payload);

} // namespace qrexec::protocol
