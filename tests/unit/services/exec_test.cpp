#include "services/exec.h"
#include "services/user_session.h"

#include "io/fd.h"
#include "io/process.h"
#include "test_util.h"

#include <pwd.h>

#include <gtest/gtest.h>

using namespace qrexec::services;
using namespace qrexec::services::fixtures;
using qrexec::services::fixtures::TempDir;
namespace io = qrexec::io;

namespace {

struct RunResult {
    int status;
    std::string out;
    std::string err;
};

std::string read_to_end(int fd) {
    std::string data;
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0)
        data.append(buffer, static_cast<size_t>(n));
    return data;
}

// Runs body in a child with stdout/stderr captured.
RunResult run_child(const std::function<void()>& body) {
    auto out = io::make_pipe();
    auto err = io::make_pipe();
    auto child = io::spawn({-1, out.second.get(), err.second.get()}, [&] {
        body();
        return 99;
    });
    out.second.reset();
    err.second.reset();
    RunResult result;
    result.out = read_to_end(out.first.get());
    result.err = read_to_end(err.first.get());
    result.status = child.wait();
    return result;
}

// Prints argv and the QREXEC variables.
const char* kDumpScript = "#!/bin/sh\n"
                          "echo \"argc=$#\"\n"
                          "for a in \"$@\"; do echo \"arg=$a\"; done\n"
                          "env | grep '^QREXEC' | sort\n"
                          "exit 7\n";

} // namespace

TEST(Exec, DirectServiceEnvironmentAndArgv) {
    TempDir t;
    auto path = t.write("svc", kDumpScript, 0755);
    setenv("QREXEC_SERVICE_ARGUMENT", "stale", 1);
    auto r = run_child([&] {
        exec_service(path, parsed_command("QUBESRPC svc+arg src keyword adminvm", false),
                     ExecStyle::Direct);
    });
    unsetenv("QREXEC_SERVICE_ARGUMENT");
    EXPECT_EQ(r.status, 7);
    EXPECT_EQ(r.out, "argc=1\narg=arg\n"
                     "QREXEC_REMOTE_DOMAIN=src\n"
                     "QREXEC_REQUESTED_TARGET_KEYWORD=adminvm\n"
                     "QREXEC_REQUESTED_TARGET_TYPE=keyword\n"
                     "QREXEC_SERVICE_ARGUMENT=arg\n"
                     "QREXEC_SERVICE_FULL_NAME=svc+arg\n");
}

TEST(Exec, LoginShellVariantMatchesDirect) {
    TempDir t;
    auto path = t.write("svc", kDumpScript, 0755);
    for (const char* text :
         {"QUBESRPC svc+arg src keyword adminvm", "QUBESRPC svc+arg src name dom0",
          "QUBESRPC svc src", "QUBESRPC svc+ src", "QUBESRPC svc+a src other x"}) {
        auto direct =
            run_child([&] { exec_service(path, parsed_command(text, false), ExecStyle::Direct); });
        auto login = run_child(
            [&] { exec_service(path, parsed_command(text, false), ExecStyle::LoginShell); });
        EXPECT_EQ(direct.status, 7) << text;
        EXPECT_EQ(login.status, 7) << text;
        if (std::string(text).ends_with("other x")) {
            // the login-shell variant sets an empty TYPE for unknown types
            EXPECT_NE(direct.out.find("QREXEC_REQUESTED_TARGET_TYPE=other"), std::string::npos);
            EXPECT_NE(login.out.find("QREXEC_REQUESTED_TARGET_TYPE=\n"), std::string::npos);
        } else {
            EXPECT_EQ(direct.out, login.out) << text;
        }
    }
}

TEST(Exec, NoArgumentMeansNoArgv1) {
    TempDir t;
    auto path = t.write("svc", kDumpScript, 0755);
    auto r = run_child(
        [&] { exec_service(path, parsed_command("QUBESRPC svc+ src", false), ExecStyle::Direct); });
    EXPECT_EQ(r.out.substr(0, 7), "argc=0\n");
    EXPECT_NE(r.out.find("QREXEC_SERVICE_ARGUMENT=\n"), std::string::npos);
    EXPECT_NE(r.out.find("QREXEC_REQUESTED_TARGET_TYPE=\n"), std::string::npos);
}

TEST(Exec, WrongTokenCountIs125) {
    TempDir t;
    auto path = t.write("svc", kDumpScript, 0755);
    for (auto style : {ExecStyle::Direct, ExecStyle::LoginShell}) {
        auto r = run_child(
            [&] { exec_service(path, parsed_command("QUBESRPC svc src a", false), style); });
        EXPECT_EQ(r.status, 125);
        EXPECT_EQ(r.out, "");
        EXPECT_NE(r.err.find("tokens"), std::string::npos);
    }
}

TEST(Exec, RelativePathIs125) {
    auto r = run_child(
        [&] { exec_service("svc", parsed_command("QUBESRPC svc src", false), ExecStyle::Direct); });
    EXPECT_EQ(r.status, 125);
}

TEST(Exec, BadInterpreterIs127NotExecutableIs125) {
    TempDir t;
    auto bad = t.write("bad", "#!/nonexistent/interpreter\n", 0755);
    for (auto style : {ExecStyle::Direct, ExecStyle::LoginShell}) {
        auto r =
            run_child([&] { exec_service(bad, parsed_command("QUBESRPC bad src", false), style); });
        EXPECT_EQ(r.status, 127);
    }
    auto garbage = t.write("garbage",
                           std::string("\x7f"
                                       "ELFxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                                       30),
                           0755);
    auto r = run_child(
        [&] { exec_service(garbage, parsed_command("QUBESRPC g src", false), ExecStyle::Direct); });
    EXPECT_EQ(r.status, 125);
    auto missing = run_child([&] {
        exec_service(t.sub("missing"), parsed_command("QUBESRPC g src", false), ExecStyle::Direct);
    });
    EXPECT_EQ(missing.status, 127);
}

TEST(Exec, ShellCommand) {
    setenv("QREXEC_TEST_KEEP", "kept", 1);
    auto r = run_child([] { exec_shell_command("echo $0 $QREXEC_TEST_KEEP; exit 3", "/bin/sh"); });
    unsetenv("QREXEC_TEST_KEEP");
    EXPECT_EQ(r.status, 3);
    EXPECT_EQ(r.out, "/bin/sh kept\n");
    auto login = run_child([] { exec_shell_command("echo $0", "/bin/sh", true); });
    EXPECT_EQ(login.out, "-sh\n");
    auto missing = run_child([] { exec_shell_command("true", "/nonexistent/sh"); });
    EXPECT_EQ(missing.status, 127);
}

TEST(Exec, NonRootUserRule) {
    EXPECT_FALSE(nonroot_user_allowed("no-such-user-qrexec"));
    // The current user is always allowed.
    std::string me = getpwuid(geteuid())->pw_name;
    EXPECT_TRUE(nonroot_user_allowed(me));
}

TEST(Exec, PamMissingUserIs125) {
    auto r = run_child(
        [] { _exit(run_as_user_with_pam("no-such-user-qrexec", getpid(), [] { _exit(0); })); });
    EXPECT_EQ(r.status, 125);
}

TEST(Exec, CallAsUserShellCommandSameUser) {
    if (geteuid() == 0) GTEST_SKIP() << "root takes the PAM path";
    std::string me = getpwuid(geteuid())->pw_name;
    PreparedCall call;
    call.kind = CallKind::ShellCommand;
    auto c = *parse_command(me + ":echo ok", true);
    auto r = run_child([&] { exec_call_as_user(c, call, me, getpid()); });
    EXPECT_EQ(r.out, "ok\n");
    auto other = run_child([&] { exec_call_as_user(c, call, "root", getpid()); });
    EXPECT_EQ(other.status, 125);
}

TEST(Exec, LoginShellArgv) {
    auto argv = login_shell_argv("/p/svc", parsed_command("QUBESRPC svc+a src name dom0", false));
    ASSERT_EQ(argv.size(), 9u);
    EXPECT_EQ(argv[0], "/bin/sh");
    EXPECT_EQ(argv[1], "-lc");
    EXPECT_EQ(argv[3], "sh");
    EXPECT_EQ(argv[4], "/p/svc");
    EXPECT_EQ(argv[5], "svc+a");
    EXPECT_EQ(argv[6], "src");
    EXPECT_EQ(argv[7], "a");
    EXPECT_EQ(argv[8], "name:dom0");
}

// Needs root and the installed PAM config (etc/pam.d/qrexec -> /etc/pam.d/qrexec).
TEST(Exec, PamSwitchesUserWithSessionEnvironment) {
    if (geteuid() != 0 || access("/etc/pam.d/qrexec", R_OK) != 0)
        GTEST_SKIP() << "needs root and /etc/pam.d/qrexec";
    passwd* nobody = getpwnam("nobody");
    if (!nobody) GTEST_SKIP() << "no user nobody";
    TempDir t;
    chmod(t.path().c_str(), 0755);
    auto path = t.write("svc",
                        "#!/bin/sh\nid -u\necho $USER $LOGNAME $QREXEC_AGENT_PID "
                        "$QREXEC_REMOTE_DOMAIN $1\nexit 4\n",
                        0755);
    PreparedCall call;
    call.kind = CallKind::Executable;
    call.path = path;
    auto c = *parse_command("nobody:QUBESRPC svc+arg work", true);
    auto r = run_child([&] { exec_call_as_user(c, call, "nobody", 4242); });
    EXPECT_EQ(r.status, 4) << r.err;
    EXPECT_EQ(r.out, std::to_string(nobody->pw_uid) + "\nnobody nobody 4242 work arg\n") << r.err;
    // A legacy command runs through the user's shell (nologin here: refused by it).
    PreparedCall shell;
    auto cmdline = *parse_command("nobody:echo hi", true);
    auto refused = run_child([&] { exec_call_as_user(cmdline, shell, "nobody", 1); });
    EXPECT_NE(refused.status, 0);
}
