// qrexec-client (dom0): the four modes of DAEMON.md §7.3.
#pragma once

#include "client/options.h"

namespace qrexec::client {

// Whole program: option parsing, then the mode; returns the process exit status
// (mode B does not return on success: it execs the service in place).
int qrexec_client_main(int argc, char** argv);

int run_client(const ClientOptions& options);

int run_vm_to_dom0(const ClientOptions& options);   // mode A: -d dom0 -c ...
int run_dom0_to_dom0(const ClientOptions& options); // mode B: -d dom0
int run_vm_to_vm(const ClientOptions& options);     // mode C: -d VM -c ...
int run_dom0_to_vm(const ClientOptions& options);   // mode D: -d VM

} // namespace qrexec::client
