// How a process "inside" a domain is started: its argv (optionally wrapped in a
// bubblewrap sandbox that sees only the domain's folder), environment, working
// directory and Unix user.
#pragma once

#include "lab/labfile.h"
#include "lab/state.h"

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace qrexec::lab {

struct LaunchPlan {
    std::vector<std::string> argv;
    std::map<std::string, std::string> env; // the complete environment
    std::string cwd;                        // empty = inherit
    std::string user;                       // empty = stay who we are
    bool umask0 = false;                    // sockets others must connect to
    int parent_death_signal = 0;            // set after the user switch (which clears it)
    bool new_session = true;                // sandbox: setsid (not for interactive shells)
};

// The bwrap command line that runs `inner` in the domain's sandbox: read-only
// system folders, the domain's folder read-write at its own path, the vchan and
// the domain's run folder (sockets), read-only `ro_files` (binaries the lab runs),
// private /tmp, /proc, /dev, pid namespace, dies with its parent.
std::vector<std::string> sandbox_argv(const Domain& domain, const StatePaths& paths,
                                      const std::string& bwrap,
                                      const std::vector<std::string>& ro_files,
                                      const std::vector<std::string>& inner,
                                      bool new_session = true);

// Environment of the current process as a map.
std::map<std::string, std::string> current_environment();

// Wraps argv for the domain (sandbox if configured), sets user and umask.
// `ro_files` are paths that must stay visible in the sandbox (e.g. the binary).
LaunchPlan plan_in_domain(const LabState& state, const StatePaths& paths, const Domain& domain,
                          std::vector<std::string> argv, std::map<std::string, std::string> env,
                          const std::vector<std::string>& ro_files, bool interactive = false);

// In a forked child: applies cwd/umask/user and execs. Returns only on failure
// (after printing why on stderr); the caller then _exits 127.
void exec_plan(const LaunchPlan& plan);

// Whether any domain runs as a user other than the invoking one (then sockets
// must be reachable across users).
bool lab_has_other_users(const LabState& state);

} // namespace qrexec::lab
