// qrexec-client-vm (AGENT.md §9): asks the local agent for a call, then serves
// the call's data vchan itself as the client side.
#pragma once

namespace qrexec::agent {

int client_vm_main(int argc, char** argv);

} // namespace qrexec::agent
