// qrexec-lab's usage text and per-command help.
#include "lab/cli.h"

#include <fmt/format.h>

namespace qrexec::lab {
namespace {

constexpr const char* kUsage = R"(usage: qrexec-lab [--state-dir=DIR] COMMAND [ARGS]

Run a qrexec lab: real qrexec daemons, agents and policy on this machine, with
domains that are folders (see docs/LAB.md).

commands:
  up [LAB]              start the lab described by LAB (default ./lab.toml)
  status                show the domains and the state of every component
  call SRC TGT SVC[+ARG] [-- PROGRAM ...]
                        call a service as qrexec-client-vm does inside SRC
  run TARGET [--user U] [--] COMMAND ...
                        run a command in TARGET, like dom0's qvm-run --pass-io
  shell DOMAIN [-- COMMAND ...]
                        a shell where qrexec-client-vm works as DOMAIN
  log [-f]              one line per call (and component events)
  down                  stop everything the lab started, remove its sockets
  demo                  a guided tour on the built-in example lab
  check [LAB]           validate a lab file, start nothing
  help [COMMAND]        help for one command

The state dir (sockets, pids, logs) is --state-dir, else $QREXEC_LAB_STATE_DIR,
else /run/qrexec-lab for root, else $XDG_RUNTIME_DIR/qrexec-lab, else
/tmp/qrexec-lab-$UID.
Binaries are found in $QREXEC_LAB_BIN_DIR, else next to qrexec-lab.
)";

} // namespace

const char* usage_text() {
    return kUsage;
}

const std::map<std::string, std::string>& command_help() {
    static const std::map<std::string, std::string> help{
        {"up", R"(usage: qrexec-lab up [LAB]

Validates LAB (default ./lab.toml), then starts in the background the policy
daemon and, for each domain, a qrexec-agent and a qrexec-daemon. Returns once
every socket is there (agents connected to their daemons), and prints the
domains. If the lab is already up, says so and exits 0.

Run as root, a domain without `user` runs as the owner of LAB, or as nobody
when root owns it (user = "root" for root). Before starting anything, up
checks as each such user that it can reach the domain's folders and the
state dir, and refuses (exit status 2) naming the path and a fix.

A lab file with [[host]] tables is a multi-host lab (needs root): each host is
an ordinary lab in its own network namespace with its own sshd, and the other
hosts' domains are RemoteVMs behind its relay (docs/REMOTE.md).
)"},
        {"check", R"(usage: qrexec-lab check [LAB]

Validates LAB (default ./lab.toml) as `up` would, and starts nothing. Errors
are printed as FILE:LINE: message, with a hint; exit status 2 if any.
)"},
        {"status", R"(usage: qrexec-lab status

Prints the domains and each component (policy daemon, agents, daemons) with
its pid, or how it ended. Exit status 0 if everything runs, 1 if a component
died, 3 if the lab is not up.
)"},
        {"down", R"(usage: qrexec-lab down

Stops every process the lab started (and their children), removes the lab's
sockets and runtime files. Logs and the call log stay in the state dir.
)"},
        {"call", R"(usage: qrexec-lab call SOURCE TARGET SERVICE[+ARG] [-- LOCAL_PROGRAM [ARGS...]]

Calls SERVICE in TARGET as qrexec-client-vm does inside SOURCE (TARGET may be
a domain, dom0, @default, ...). stdin/stdout are the call's; with
LOCAL_PROGRAM, that program's stdin/stdout are. Exit status as
qrexec-client-vm: the service's, 126 if refused by policy. An `ask` rule
prompts on this terminal; without one the lab's `ask` setting decides.
)"},
        {"run", R"(usage: qrexec-lab run TARGET [--user USER] [--] COMMAND [ARGS...]

Runs COMMAND (a shell command line) in TARGET like dom0's
`qvm-run --pass-io`: stdin/stdout/stderr passed through, exit status of the
command. Default user: the domain's (DEFAULT).
)"},
        {"shell", R"(usage: qrexec-lab shell DOMAIN [-- COMMAND [ARGS...]]

Starts $SHELL (or COMMAND) with an environment where `qrexec-client-vm`
works as DOMAIN: e.g. `qrexec-client-vm personal demo.Echo`. For a sandboxed
domain the shell runs inside its sandbox, as the domain's user.
)"},
        {"log", R"(usage: qrexec-lab log [-f|--follow] [--json]

One line per call: time, source, target, service+arg, decision, the policy
file:line that decided it, exit status, bytes in (caller to service) and out,
duration; and lines starting with ** for component events (a daemon or agent
that died). -f keeps printing new lines. See docs/LAB.md for the sources.
)"},
        {"demo", R"(usage: qrexec-lab demo [--keep]

Brings up the built-in example lab in a temporary folder, runs a commented
tour of allowed, asked, denied and failing calls, shows the log, and takes
the lab down again (--keep leaves it up and prints where it is).
)"},
    };
    return help;
}

int usage_error(const std::string& message, const std::string& command) {
    fmt::print(stderr, "qrexec-lab: {}\n", message);
    if (!command.empty())
        fmt::print(stderr, "try 'qrexec-lab {} --help'\n", command);
    else
        fmt::print(stderr, "try 'qrexec-lab --help'\n");
    return 2;
}

} // namespace qrexec::lab
