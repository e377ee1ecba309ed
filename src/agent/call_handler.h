// The per-call handler (AGENT.md §2.6): a process forked by the agent (or by the
// fork server) for one EXEC_CMDLINE / JUST_EXEC. It connects the data vchan,
// starts the service and runs the service side of the data stream.
#pragma once

#include "services/command.h"
#include "services/rpc_config.h"

#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace qrexec::agent {

enum class RunAs {
    RequestedUser, // agent: PAM as root, else the requested user must be ours
    Myself,        // fork server: already the right user, exec directly
};

struct CallRequest {
    uint32_t type = 0; // MSG_EXEC_CMDLINE or MSG_JUST_EXEC
    uint32_t connect_domain = 0;
    uint32_t connect_port = 0;
    std::optional<services::ParsedCommand> command; // nullopt: unparsable (-> 125)
    services::RpcConfig config;
    bool config_failed = false; // rpc-config could not be loaded (-> 125)
    std::string user;           // effective user (force-user applied)
    RunAs run_as = RunAs::RequestedUser;
    // The serving process' own user name (cached by the agent; empty: unknown),
    // so the handler can posix_spawn the service without a passwd lookup.
    std::string own_user;
};

// Parses the command and loads its rpc-config as the agent does before deciding
// where the call runs (with_user: the "USER:" form from dom0).
CallRequest make_call_request(uint32_t type, uint32_t domain, uint32_t port,
                              std::string_view cmdline, bool with_user);

// Body of the handler process; returns its exit status. Call right after fork.
int run_call_handler(const CallRequest& request);

class ServiceSignalRoutes;

// A call served by a thread of the agent instead of a forked handler: what the
// handler did process-wide becomes per call.
struct InProcessCall {
    pid_t agent_pid = 0;      // the service's QREXEC_AGENT_PID (an environment entry)
    int switch_event_fd = -1; // SIGUSR1 routed to this call (signal_routes.h); nonblocking
    ServiceSignalRoutes* routes = nullptr; // where the service's pid is registered
    int sigusr1_fd = -1;                   // the agent's SIGUSR1 signalfd (routes->drain)
    // The agent's own soft RLIMIT_NOFILE while it is raised for many calls, 0
    // otherwise: the service gets it back (io::restore_soft_fd_limit).
    const std::atomic<rlim_t>* replaced_fd_limit = nullptr;
};

// Serves one MSG_EXEC_CMDLINE in the calling thread, as run_call_handler does
// in a handler process, without forking: the service is posix_spawn'ed, and
// what a forked child would report (wrong user, bad service, failed exec) is
// sent as that child's STDERR line and exit code. Only for an agent that is not
// root (no PAM session). Returns the status a handler would exit with.
int serve_call_in_process(const CallRequest& request, const InProcessCall& context);

} // namespace qrexec::agent
