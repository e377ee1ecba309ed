// Preparing one call before anything is spawned (AGENT.md §2.5/§2.6, §4.1-§4.2,
// DAEMON.md §7.3): config, lookup, socket/TCP connection and header. Failures here
// are the "before a process is spawned" ones (STDOUT EOF, STDERR EOF, EXIT 125/127).
#pragma once

#include "io/fd.h"
#include "services/command.h"
#include "services/lookup.h"
#include "services/rpc_config.h"

#include <optional>
#include <string>

namespace qrexec::services {

enum class CallKind { Executable, Socket, Tcp, ShellCommand };

struct PreparedCall {
    CallKind kind = CallKind::ShellCommand;
    std::string path; // Executable: program path; Socket: socket path; Tcp: symlink path
    RpcConfig config; // defaults when not loaded / not a service
    // Socket/Tcp: the connected socket, header (service_header + NUL) already written
    // unless config.skip_service_descriptor. Used for both directions.
    io::Fd socket;
};

struct PrepareResult {
    int failure = 0; // 0 on success, else the exit code to report: 125 or 127
    std::optional<PreparedCall> call;
    bool ok() const { return failure == 0; }
};

// load_config: read rpc-config for QUBESRPC calls (error -> 125). Callers that already
// loaded it (the agent needs force-user/wait-for-session first) use the other overload.
PrepareResult prepare_call(const ParsedCommand& command, const SearchPaths& paths,
                           bool load_config);
PrepareResult prepare_call(const ParsedCommand& command, const SearchPaths& paths,
                           const RpcConfig& config);

// The user the call runs as: rpc-config force-user, else the command's user.
std::string effective_user(const ParsedCommand& command, const RpcConfig& config);

// AF_UNIX stream connect; paths longer than sun_path go through a temporary symlink
// in /tmp/qrexec-XXXXXX/ (removed again before returning). Invalid Fd + error on failure.
io::Fd connect_unix_socket(const std::string& path, std::string* error = nullptr,
                           int* error_number = nullptr);

} // namespace qrexec::services
