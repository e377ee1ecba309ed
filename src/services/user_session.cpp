#include "services/user_session.h"

#include "services/exec.h"

#include "io/log.h"
#include "io/privileges.h"
#include "io/process.h"
#include "protocol/messages.h"

#include <grp.h>
#include <pwd.h>
#ifdef QREXEC_HAVE_PAM
#include <security/pam_appl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace qrexec::services {

using protocol::kExitProblem;

namespace {

[[noreturn]] void die(int code, const std::string& message) {
    QLOG("{}", message);
    _exit(code);
}

#ifdef QREXEC_HAVE_PAM
// Answers every prompt with an empty string (AGENT.md §4.3).
int pam_conversation(int count, const pam_message** messages, pam_response** responses, void*) {
    if (count <= 0 || count > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
    auto* reply =
        static_cast<pam_response*>(calloc(static_cast<size_t>(count), sizeof(pam_response)));
    if (!reply) return PAM_BUF_ERR;
    for (int i = 0; i < count; ++i) {
        (void)messages[i];
        reply[i].resp = strdup("");
        if (!reply[i].resp) {
            for (int j = 0; j < i; ++j)
                free(reply[j].resp);
            free(reply);
            return PAM_BUF_ERR;
        }
    }
    *responses = reply;
    return PAM_SUCCESS;
}

// Ends the PAM transaction (and the session / credentials if they were set up).
class PamSession {
  public:
    ~PamSession() {
        if (!handle) return;
        if (session_open) pam_close_session(handle, 0);
        if (cred_set) pam_setcred(handle, PAM_DELETE_CRED);
        pam_end(handle, last);
    }
    pam_handle_t* handle = nullptr;
    int last = PAM_SUCCESS;
    bool cred_set = false;
    bool session_open = false;

    bool check(int rc, const char* what) {
        last = rc;
        if (rc == PAM_SUCCESS) return true;
        QLOG("PAM {} failed: {}", what, pam_strerror(handle, rc));
        return false;
    }
};
#endif

} // namespace

std::optional<std::string> lookup_own_user_name() {
    passwd pw{};
    passwd* result = nullptr;
    std::vector<char> buffer(16384);
    if (getpwuid_r(geteuid(), &pw, buffer.data(), buffer.size(), &result) != 0 || !result)
        return std::nullopt;
    return std::string(result->pw_name);
}

bool nonroot_user_allowed(const std::string& user) {
    auto own = lookup_own_user_name();
    return own && user == *own;
}

const std::string& OwnUserName::get() {
    auto now = std::chrono::steady_clock::now();
    if (!valid_ || now - fetched_ >= lifetime_) {
        auto name = lookup_own_user_name();
        name_ = name.value_or("");
        valid_ = name.has_value();
        fetched_ = now;
    }
    return name_;
}

int run_as_user_with_pam(const std::string& user, pid_t agent_pid,
                         const std::function<void()>& body) {
#ifdef QREXEC_HAVE_PAM
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buffer(16384);
    if (getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found) != 0 || !found) {
        QLOG("User {} does not exist", user);
        return kExitProblem;
    }
    PamSession pam;
    pam_conv conv{pam_conversation, nullptr};
    if (!pam.check(pam_start("qrexec", pw.pw_name, &conv, &pam.handle), "start")) {
        pam.handle = nullptr; // pam_start failure leaves nothing to end
        return kExitProblem;
    }
    if (!pam.check(pam_authenticate(pam.handle, 0), "authenticate")) return kExitProblem;
    if (initgroups(pw.pw_name, pw.pw_gid) != 0) {
        QLOG_ERRNO("initgroups for {}", user);
        return kExitProblem;
    }
    if (!pam.check(pam_setcred(pam.handle, PAM_ESTABLISH_CRED), "setcred")) return kExitProblem;
    pam.cred_set = true;
    if (!pam.check(pam_open_session(pam.handle, 0), "open_session")) return kExitProblem;
    pam.session_open = true;
    const std::string vars[] = {
        "QREXEC_AGENT_PID=" + std::to_string(agent_pid),
        std::string("HOME=") + pw.pw_dir,
        std::string("SHELL=") + pw.pw_shell,
        std::string("USER=") + pw.pw_name,
        std::string("LOGNAME=") + pw.pw_name,
    };
    for (const auto& var : vars)
        if (!pam.check(pam_putenv(pam.handle, var.c_str()), "putenv")) return kExitProblem;
    char** pam_env = pam_getenvlist(pam.handle);
    if (!pam_env) {
        QLOG("pam_getenvlist failed");
        return kExitProblem;
    }
    auto groups = io::groups_of_user(pw.pw_name, pw.pw_gid);
    pid_t pid = fork();
    if (pid < 0) {
        QLOG_ERRNO("fork");
        return kExitProblem;
    }
    if (pid == 0) {
        if (setgid(pw.pw_gid) != 0) die(kExitProblem, "setgid failed");
        if (setuid(pw.pw_uid) != 0) die(kExitProblem, "setuid failed");
        if (!groups) die(kExitProblem, "cannot list the groups of " + user);
        if (auto why = io::verify_dropped_privileges(pw.pw_uid, pw.pw_gid, *groups))
            die(kExitProblem, "privilege drop to " + user + " incomplete: " + *why);
        setsid();
        if (chdir(pw.pw_dir) != 0) QLOG_ERRNO("Warning: cannot chdir to {}", pw.pw_dir);
        environ = pam_env;
        body();
        _exit(kExitProblem);
    }
    for (char** p = pam_env; *p; ++p)
        free(*p);
    free(pam_env);
    // The grandchild holds the stdio; ours must not keep the streams open.
    close(0);
    close(1);
    close(2);
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    return r == pid ? io::decode_wait_status(status) : kExitProblem;
#else
    (void)agent_pid;
    (void)body;
    QLOG("Built without PAM: cannot switch to user {}", user);
    return kExitProblem;
#endif
}

void exec_call_as_user(const ParsedCommand& command, const PreparedCall& call,
                       const std::string& user, pid_t agent_pid) {
    bool service = call.kind == CallKind::Executable;
    if (!service && call.kind != CallKind::ShellCommand)
        die(kExitProblem, "exec_call_as_user: not an executable call");
    if (geteuid() != 0) {
        if (!nonroot_user_allowed(user))
            die(kExitProblem,
                "Running as a different user (" + user + ") requires the agent to run as root");
        if (service) exec_service(call.path, command, ExecStyle::Direct);
        exec_shell_command(command.command, "/bin/sh");
    }
    int status = run_as_user_with_pam(user, agent_pid, [&] {
        if (service) exec_service(call.path, command, ExecStyle::LoginShell);
        const char* shell = getenv("SHELL");
        exec_shell_command(command.command, shell && *shell ? shell : "/bin/sh", true);
    });
    _exit(status);
}

} // namespace qrexec::services
