// qrexec-policy-daemon: the policy server of POLICY.md §10.
#include "io/event_loop.h"
#include "io/log.h"
#include "policy_server/ask.h"
#include "policy_server/policy_server.h"
#include "policy_server/programs/command_line.h"
#include "policy_server/programs/programs.h"

#include <grp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qrexec::policy {

// Named per program: the files of this folder are compiled in one batch.
namespace policy_daemon_program {

using programs::CommandLine;

constexpr programs::Program kProgram = {
    "qrexec-policy-daemon",
    "usage: qrexec-policy-daemon [-h] [--policy-path POLICY_PATH]\n"
    "                            [--socket-path SOCKET_PATH]\n"
    "                            [--eval-socket-path EVAL_SOCKET_PATH]\n"
    "                            [--gui-socket-path GUI_SOCKET_PATH]\n"
    "                            [--system-info FILE] [--ask-command COMMAND]\n"};

DaemonConfig parse_options(int argc, char** argv) {
    DaemonConfig config;
    config.ask_command = ask_command_from_env();
    CommandLine cl(kProgram, programs::kPolicyDirOption | programs::kSystemInfoOption);
    // Upstream's --policy-path names one directory (no colon list); it adds to the
    // same list as --policy-dir.
    cl.option("policy-path", [&](const char* value) { cl.shared.policy_dirs.emplace_back(value); });
    cl.option("socket-path", [&](const char* value) { config.socket_path = value; });
    cl.option("eval-socket-path", [&](const char* value) { config.eval_socket_path = value; });
    cl.option("gui-socket-path", [&](const char* value) { config.gui_socket_path = value; });
    cl.option("ask-command", [&](const char* value) { config.ask_command = value; });
    auto positional = cl.parse(argc, argv);
    if (!positional.empty())
        programs::usage_error(kProgram, "unrecognized arguments: " + positional.front());
    config.paths = cl.shared.policy_paths();
    config.system_info_file = cl.shared.system_info_file();
    return config;
}

} // namespace policy_daemon_program

int policy_daemon_main(int argc, char** argv) {
    using namespace policy_daemon_program;
    io::require_standard_fds(kProgram.name);
    DaemonConfig config = parse_options(argc, argv);
    ::umask(0007);
    if (::geteuid() == 0) {
        // The sockets are for the qubes group (qrexec-daemon runs as root anyway).
        if (group* g = ::getgrnam("qubes"); g && ::setgid(g->gr_gid) != 0)
            QLOG_ERRNO("setgid qubes");
    }
    ::signal(SIGPIPE, SIG_IGN);

    io::EventLoop loop;
    io::Fd signals = io::make_signal_fd({SIGTERM, SIGINT});
    loop.watch(signals.get(), EPOLLIN, [&](uint32_t) {
        io::read_signals(signals.get());
        loop.stop();
    });
    PolicyDaemon daemon(loop, config);
    try {
        daemon.start();
    } catch (const std::exception& e) {
        QLOG("cannot start: {}", e.what());
        return 1;
    }
    QLOG("listening on {}", config.socket_path);
    loop.run();
    return 0;
}

} // namespace qrexec::policy
