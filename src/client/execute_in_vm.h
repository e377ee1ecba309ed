// "Execute in VM" (DAEMON.md §5.5): start a VM-initiated call's service in the
// target VM and tell the calling VM's own daemon where to connect. Shared by
// qrexec-client -c (mode C) and the daemon's policy worker.
#pragma once

#include <string>

namespace qrexec::client {

struct ExecuteInVmRequest {
    std::string socket_dir;  // where qrexec.<name> sockets live
    std::string destination; // VM name, "uuid:<uuid>", "@dispvm:<tmpl>", "@dispvm:uuid:<uuid>"
    std::string command;     // "<user>:QUBESRPC svc+arg src" (sent as is, plus NUL)
    int calling_domid = 0;   // the VM that made the request (connect_domain)
    std::string ident;       // request id of that VM's pending request (<32 chars)
    bool autostart = false;
    bool just_exec = false;
    bool wait = false; // block until the target daemon reports the call finished
};

// Returns true on success (SERVICE_CONNECT sent to the calling VM's daemon and, with
// wait, the call finished). Failures are logged; a disposable created here is killed.
bool execute_in_vm(const ExecuteInVmRequest& request);

} // namespace qrexec::client
