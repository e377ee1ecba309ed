// Test helper: runs a check in a forked child (for per-process state such as
// credentials and resource limits).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

namespace qrexec::io::fixtures {

// Returns the child's exit status: 0 passed, anything else names the failed
// step; 100 when the child did not exit normally.
template <typename F> int in_child(F body) {
    pid_t pid = ::fork();
    if (pid == 0) _exit(body());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

} // namespace qrexec::io::fixtures
