// The command a call runs (AGENT.md §3): "USER:[nogui:]COMMAND" where COMMAND is a
// legacy shell command or "QUBESRPC DESCRIPTOR SOURCE [TYPE TARGET]".
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::services {

inline constexpr size_t kMaxDescriptorLen = 65000; // AGENT.md §3 step 5
inline constexpr size_t kMaxServiceNameLen = 255;  // NAME_MAX, AGENT.md §3 step 6

struct ParsedCommand {
    std::string username; // empty when parsed without a user part (dom0 commands)
    bool nogui = false;
    std::string command;     // the text after "USER:[nogui:]"
    bool is_service = false; // starts with "QUBESRPC"

    // Only for services:
    std::string descriptor;              // "svc+arg" or "svc" exactly as received
    std::string service_name;            // "svc"
    std::optional<std::string> argument; // set iff the descriptor contains '+'
    std::string lookup_descriptor;       // descriptor with '+' appended if it had none
    std::string source_domain;
    std::string service_header; // text after "QUBESRPC " (socket service header, without NUL)

    // The argument, or "" when absent (argv/exec helpers).
    std::string_view argument_or_empty() const {
        return argument ? std::string_view(*argument) : std::string_view();
    }
};

struct ParseError {
    std::string message;
};

// with_user: the agent form ("USER:..."); without: dom0 forms (qrexec-client -c / dom0->dom0).
// Returns nullopt and fills `error` on a parse failure.
std::optional<ParsedCommand> parse_command(std::string_view text, bool with_user,
                                           std::string* error = nullptr);

// The service header split on runs of spaces (AGENT.md §3 step 9).
std::vector<std::string_view> split_service_tokens(std::string_view service_header);

// Executables need exactly "DESCRIPTOR SOURCE" or "DESCRIPTOR SOURCE TYPE TARGET".
bool has_valid_token_count(const ParsedCommand& command);

// TYPE and TARGET of the 4-token form (dom0 services); nullopt for 2 tokens.
struct RequestedTarget {
    std::string type;
    std::string target;
};
std::optional<RequestedTarget> requested_target(const ParsedCommand& command);

} // namespace qrexec::services
