// Runs a child with its stdin/stdout on socketpairs and relays our own fd 0/1
// to/from it, counting the bytes each way (what `call`/`run` log). Meanwhile
// extra fds can be served (the ask socket of `call`).
#pragma once

#include "lab/launch.h"

#include <functional>
#include <optional>
#include <vector>

namespace qrexec::lab {

struct RelayResult {
    int raw_status = 0;      // waitpid status of the child
    int exit_status = 0;     // decoded: code, or 128+signal
    long long bytes_in = 0;  // our stdin -> child
    long long bytes_out = 0; // child -> our stdout
};

struct ExtraFd {
    int fd = -1;
    std::function<void()> on_readable;
};

// relay_io=false: the child inherits our stdio (no counting).
std::optional<RelayResult> run_relayed(const LaunchPlan& plan, bool relay_io,
                                       const std::vector<ExtraFd>& extra = {});

} // namespace qrexec::lab
