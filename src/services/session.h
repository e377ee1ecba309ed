// qubes.WaitForSession (AGENT.md §7).
#pragma once

#include "io/fd.h"
#include "io/process.h"

#include <string>
#include <vector>

namespace qrexec::services {

inline constexpr const char* kWaitForSessionService = "qubes.WaitForSession";

// dom0 (qrexec-client / daemon worker): runs qubes.WaitForSession synchronously with
// stdin at EOF (/dev/null), stdout/stderr inherited, QREXEC_REMOTE_DOMAIN=<source>;
// its status (and a missing service) is ignored.
void run_wait_for_session_sync(const std::vector<std::string>& service_dirs,
                               const std::string& source);

// Agent: spawns qubes.WaitForSession with `stdin_fd` as stdin (the agent then writes
// "<user>\n" into the other end and closes it). The child exits 1 when the service
// is missing or its path does not fit upstream's 256-byte buffer.
io::Child spawn_wait_for_session(const std::vector<std::string>& service_dirs,
                                 const std::string& source, int stdin_fd);

} // namespace qrexec::services
