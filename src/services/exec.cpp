#include "services/exec.h"

#include "io/log.h"
#include "io/process.h"
#include "protocol/messages.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qrexec::services {

using protocol::kExitNotFound;
using protocol::kExitProblem;

// Built only from constants; the call's values arrive as positional parameters:
// $1 PATH, $2 FULLNAME, $3 SOURCE, $4 ARG, $5 TARGET where TARGET is "name:X",
// "keyword:X" or empty (2-token form, or a type that sets neither variable).
const char* const kLoginShellScript =
    "set -e\n"
    "unset QREXEC_SERVICE_FULL_NAME QREXEC_REMOTE_DOMAIN QREXEC_SERVICE_ARGUMENT "
    "QREXEC_REQUESTED_TARGET_TYPE QREXEC_REQUESTED_TARGET QREXEC_REQUESTED_TARGET_KEYWORD\n"
    "export QREXEC_SERVICE_FULL_NAME=\"$2\" QREXEC_REMOTE_DOMAIN=\"$3\"\n"
    "case \"$2\" in *+*) export QREXEC_SERVICE_ARGUMENT=\"$4\";; esac\n"
    "case \"$5\" in\n"
    "name:*) export QREXEC_REQUESTED_TARGET_TYPE=name "
    "QREXEC_REQUESTED_TARGET=\"${5#name:}\";;\n"
    "keyword:*) export QREXEC_REQUESTED_TARGET_TYPE=keyword "
    "QREXEC_REQUESTED_TARGET_KEYWORD=\"${5#keyword:}\";;\n"
    "*) export QREXEC_REQUESTED_TARGET_TYPE=;;\n"
    "esac\n"
    "if [ -n \"$4\" ]; then exec \"$1\" \"$4\"; else exec \"$1\"; fi\n";

namespace {

[[noreturn]] void die(int code, const std::string& message) {
    QLOG("{}", message);
    _exit(code);
}

[[noreturn]] void exec_or_die(const std::string& program, std::vector<std::string> argv,
                              std::vector<std::string> env) {
    io::exec_program(program, argv, env);
    int err = errno;
    QLOG("execve {} failed: {}", program, io::errno_text(err));
    _exit(err == ENOENT ? kExitNotFound : kExitProblem);
}

std::string login_target_arg(const ParsedCommand& command) {
    auto target = requested_target(command);
    if (!target || (target->type != "name" && target->type != "keyword")) return "";
    return target->type + ":" + target->target;
}

} // namespace

std::vector<std::string> login_shell_argv(const std::string& path, const ParsedCommand& command) {
    return {"/bin/sh",
            "-lc",
            kLoginShellScript,
            "sh",
            path,
            command.descriptor,
            command.source_domain,
            std::string(command.argument_or_empty()),
            login_target_arg(command)};
}

void exec_service(const std::string& path, const ParsedCommand& command, ExecStyle style) {
    if (!has_valid_token_count(command))
        die(kExitProblem, "Invalid service command: expected 2 or 4 space-separated tokens in '" +
                              command.service_header + "'");
    if (path.empty() || path.front() != '/')
        die(kExitProblem, "Service path is not absolute: " + path);
    EnvList env = build_service_environment(current_environment(), command);
    if (style == ExecStyle::Direct) exec_or_die(path, build_service_argv(path, command), env);
    // The shell would report exec failures as 126/127; check first so the codes match
    // the direct variant.
    if (access(path.c_str(), X_OK) != 0) {
        int err = errno;
        die(err == ENOENT ? kExitNotFound : kExitProblem,
            "Cannot execute " + path + ": " + io::errno_text(err));
    }
    exec_or_die("/bin/sh", login_shell_argv(path, command), env);
}

void exec_shell_command(const std::string& command, const std::string& shell, bool login_argv0) {
    std::string argv0 = shell;
    if (login_argv0) {
        auto slash = shell.rfind('/');
        argv0 = "-" + (slash == std::string::npos ? shell : shell.substr(slash + 1));
    }
    exec_shell_command_argv0(command, shell, argv0);
}

void exec_shell_command_argv0(const std::string& command, const std::string& shell,
                              const std::string& argv0) {
    exec_or_die(shell, {argv0, "-c", command}, current_environment());
}

std::optional<io::ExecSpec> direct_exec_spec(const ParsedCommand& command, const PreparedCall& call,
                                             bool as_self, const std::string& user,
                                             const std::string& own_user) {
    if (!as_self && (geteuid() == 0 || own_user.empty() || user != own_user)) return std::nullopt;
    io::ExecSpec spec;
    if (call.kind == CallKind::Executable) {
        if (!has_valid_token_count(command) || call.path.empty() || call.path.front() != '/')
            return std::nullopt;
        spec.path = call.path;
        spec.argv = build_service_argv(call.path, command);
        spec.env = build_service_environment(current_environment(), command);
        return spec;
    }
    if (call.kind != CallKind::ShellCommand) return std::nullopt;
    // As exec_call_as_user (agent: /bin/sh) and the fork server ($SHELL, argv0 "sh").
    spec.path = "/bin/sh";
    std::string argv0 = "/bin/sh";
    if (as_self) {
        const char* shell = std::getenv("SHELL");
        if (shell && *shell) spec.path = shell;
        argv0 = "sh";
    }
    spec.argv = {argv0, "-c", command.command};
    return spec;
}

std::optional<ExecRefusal> direct_exec_refusal(const ParsedCommand& command,
                                               const PreparedCall& call, const std::string& user,
                                               const std::string& own_user) {
    // The checks of exec_call_as_user and exec_service, in their order.
    if (own_user.empty() || user != own_user)
        return ExecRefusal{kExitProblem, "Running as a different user (" + user +
                                             ") requires the agent to run as root"};
    if (call.kind != CallKind::Executable) return std::nullopt;
    if (!has_valid_token_count(command))
        return ExecRefusal{kExitProblem,
                           "Invalid service command: expected 2 or 4 space-separated tokens in '" +
                               command.service_header + "'"};
    if (call.path.empty() || call.path.front() != '/')
        return ExecRefusal{kExitProblem, "Service path is not absolute: " + call.path};
    return std::nullopt;
}

ExecRefusal exec_failure_refusal(const std::string& path, int err) {
    return {err == ENOENT ? kExitNotFound : kExitProblem,
            fmt::format("execve {} failed: {}", path, io::errno_text(err))};
}

} // namespace qrexec::services
