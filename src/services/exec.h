// Executing a call's program INSIDE an already-forked child whose stdio fds are
// installed (AGENT.md §4.3, §4.5). The exec_* functions never return: on failure
// they print a diagnostic on stderr and _exit(125) or _exit(127).
#pragma once

#include "services/command.h"
#include "services/environment.h"
#include "services/prepare.h"

#include "io/process.h"

#include <sys/types.h>

#include <optional>
#include <string>

namespace qrexec::services {

enum class ExecStyle {
    Direct,     // execve(path, [path, ARG?], service environment)
    LoginShell, // /bin/sh -lc SCRIPT sh PATH FULLNAME SOURCE ARG TARGET (root agent + PAM)
};

// The constant script used by ExecStyle::LoginShell (exposed for tests).
extern const char* const kLoginShellScript;

// Argument vector of the LoginShell variant (exposed for tests).
std::vector<std::string> login_shell_argv(const std::string& path, const ParsedCommand& command);

// Token count 2 or 4 (else 125), absolute path (else 125), environment per §4.5
// built from the current environ; execve ENOENT -> 127, other errors -> 125.
[[noreturn]] void exec_service(const std::string& path, const ParsedCommand& command,
                               ExecStyle style);

// `shell -c command` with the current environment; login_argv0 gives argv[0] =
// "-<basename of shell>" (login shell, PAM variant).
[[noreturn]] void exec_shell_command(const std::string& command, const std::string& shell,
                                     bool login_argv0 = false);
// `shell -c command` with an explicit argv[0] (e.g. "bash" for dom0's `bash -c`).
[[noreturn]] void exec_shell_command_argv0(const std::string& command, const std::string& shell,
                                           const std::string& argv0);

// Root agent (AGENT.md §4.3): PAM service "qrexec" session for `user`, then a forked
// grandchild switched to the user (setgid/setuid/setsid/chdir home, environ = PAM env
// incl. QREXEC_AGENT_PID/HOME/SHELL/USER/LOGNAME) runs body() (which should exec; if it
// returns the grandchild exits 125). The caller's 0/1/2 are closed while waiting.
// Returns the grandchild's status (128+sig if signalled), or 125 on any PAM failure.
std::optional<io::ExecSpec> direct_exec_spec(const ParsedCommand& command, const PreparedCall& call,
                                             bool as_self, const std::string& user,
                                             const std::string& own_user);

// What a forked child would report instead of running the program when the
// agent is not root (the cases where direct_exec_spec gives nullopt without
// PAM): the exit code and the diagnostic the child would print on its stderr.
// nullopt: nothing to refuse. For a process that must not fork (the agent
// serving a call in its own process, which has other calls' threads).
struct ExecRefusal {
    int code;
    std::string message;
};
std::optional<ExecRefusal> direct_exec_refusal(const ParsedCommand& command,
                                               const PreparedCall& call, const std::string& user,
                                               const std::string& own_user);
// The refusal for an exec that failed with `err` (posix_spawn's error), as the
// forked child reports it: ENOENT 127, anything else 125.
ExecRefusal exec_failure_refusal(const std::string& path, int err);

// Whole §4.3 decision for a per-call handler's child, for Executable and ShellCommand
// calls: as root -> PAM + login shell (services) / "<user shell> -c" (commands);
// otherwise the user must be ours -> direct exec / "/bin/sh -c". Never returns.
} // namespace qrexec::services
