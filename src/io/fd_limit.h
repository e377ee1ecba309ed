// The open-file limit of a process that holds many calls' descriptors at once.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>

namespace qrexec::io {

// Raises the soft RLIMIT_NOFILE to `wanted` (at most the hard limit) when it is
// lower. Returns the soft limit it replaced, for the programs this process
// starts (nullopt: nothing changed, or the limit could not be read or set).
std::optional<rlim_t> raise_soft_fd_limit(rlim_t wanted);

// Sets this process' soft RLIMIT_NOFILE to `soft` (lowering it back after
// raise_soft_fd_limit); false, logged, when it cannot.
bool set_soft_fd_limit(rlim_t soft);

// Gives the process `pid` the soft limit `soft` again (prlimit). A child that
// is already gone (ESRCH) or has become another user's (EPERM, a set-uid
// program) is left alone; other errors are logged.
void restore_soft_fd_limit(pid_t pid, rlim_t soft);

} // namespace qrexec::io
