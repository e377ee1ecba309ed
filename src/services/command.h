// The command a call runs (AGENT.md §3): "USER:[nogui:]COMMAND" where COMMAND is a
// legacy shell command or "QUBESRPC DESCRIPTOR SOURCE [TYPE TARGET]".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::services {

struct ParsedCommand {
    std::string username;   // empty when parsed without a user part (dom0 commands)
    bool nogui = false;
    std::string command;    // the text after "USER:[nogui:]"
    bool is_service = false; // starts with "QUBESRPC"

    // Only for services:
    std::string descriptor;        // "svc+arg" or "svc" exactly as received
    std::string service_name;      // "svc"
    std::optional<std::string> argument; // set iff the descriptor contains '+'
    std::string lookup_descriptor; // descriptor with '+' appended if it had none
    std::string source_domain;
    std::string service_header;    // text after "QUBESRPC " (socket service header, without NUL)
};

struct ParseError {
    std::string message;
};

// with_user: the agent form ("USER:..."); without: dom0 forms (qrexec-client -c / dom0->dom0).
// Returns nullopt and fills `error` on a parse failure.
std::optional<ParsedCommand> parse_command(std::string_view text, bool with_user,
                                           std::string* error = nullptr);

} // namespace qrexec::services
