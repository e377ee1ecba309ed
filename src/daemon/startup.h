// Entry point of the qrexec-daemon binary (apps/qrexec-daemon/main.cpp).
#pragma once

namespace qrexec::daemon {

// Full program: returns the process exit status.
int daemon_main(int argc, char* argv[]);

} // namespace qrexec::daemon
