// The lab supervisor: a background process (`qrexec-lab supervise`, started by
// `up`) that owns every component of a running lab. It starts the policy daemon,
// one agent and one daemon per domain, reports readiness to `up` through a pipe,
// records deaths in components.json and the call log, and on SIGTERM (`down`)
// stops everything it started, including their orphans (it is a child
// subreaper), and removes the sockets.
#pragma once

#include "lab/state.h"

namespace qrexec::lab {

// Runs until SIGTERM/SIGINT. `ready_fd` receives "ok\n" or "error: ...\n" once.
int run_supervisor(const StatePaths& paths, int ready_fd);

// The sockets and runtime files of a lab (not logs): what `down` removes.
void remove_runtime_files(const StatePaths& paths);

} // namespace qrexec::lab
