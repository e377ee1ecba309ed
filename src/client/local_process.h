// A dom0-local program connected to a data vchan: the service of mode A or the
// -l LOCAL_CMD of mode D (DAEMON.md §7.2/§7.3).
#pragma once

#include "io/fd.h"
#include "io/process.h"
#include "services/rpc_config.h"

#include <optional>
#include <string>

namespace qrexec::client {

struct LocalProcess {
    int failure = 0; // 125/127 when it could not be started (nothing spawned)
    std::optional<io::Child> child;
    io::Fd input;  // what the program writes (its stdout, or the service socket)
    io::Fd output; // what the program reads (its stdin, or the same socket)
    bool is_socket_service = false;
    services::RpcConfig config;
};

// Parses `command` as a dom0 command ("[nogui:]QUBESRPC ..." or a shell command for
// `bash -c`), loads rpc-config (not for nogui:), runs wait-for-session if configured,
// and spawns it with stdin/stdout socketpairs and stderr inherited.
// QREXEC_REMOTE_DOMAIN=remote_domain is set for the program.
LocalProcess start_local_process(const std::string& command, const std::string& remote_domain);

} // namespace qrexec::client
