// qrexec-agent (AGENT.md §2): owns the control vchan to dom0, the trigger socket
// for qrexec-client-vm, and starts one handler process per executed call.
#pragma once

namespace qrexec::agent {

// Where the agent listens for qrexec-client-vm (its -a/--agent-socket default).
inline constexpr const char* kDefaultAgentSocket = "/var/run/qubes/qrexec-agent";

int agent_main(int argc, char** argv);

} // namespace qrexec::agent
