// qrexec-policy-daemon: the policy server of POLICY.md §10.
#include "io/event_loop.h"
#include "io/log.h"
#include "policy/ask.h"
#include "policy/cli.h"
#include "policy/daemon.h"

#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

using namespace qrexec;
using namespace qrexec::policy;

namespace {

constexpr const char* kProgram = "qrexec-policy-daemon";
constexpr const char* kUsage =
    "usage: qrexec-policy-daemon [-h] [--policy-path POLICY_PATH]\n"
    "                            [--socket-path SOCKET_PATH]\n"
    "                            [--eval-socket-path EVAL_SOCKET_PATH]\n"
    "                            [--gui-socket-path GUI_SOCKET_PATH]\n"
    "                            [--system-info FILE] [--ask-command COMMAND]\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fputs(kUsage, stderr);
    std::fprintf(stderr, "%s: error: %s\n", kProgram, message.c_str());
    std::exit(2);
}

DaemonConfig parse_options(int argc, char** argv) {
    enum { OPT_POLICY = 1000, OPT_DIR, OPT_SOCKET, OPT_EVAL, OPT_GUI, OPT_SYSINFO, OPT_ASK };
    static const option longopts[] = {
        {"help", no_argument, nullptr, 'h'},
        {"policy-path", required_argument, nullptr, OPT_POLICY},
        {"policy-dir", required_argument, nullptr, OPT_DIR},
        {"socket-path", required_argument, nullptr, OPT_SOCKET},
        {"eval-socket-path", required_argument, nullptr, OPT_EVAL},
        {"gui-socket-path", required_argument, nullptr, OPT_GUI},
        {"system-info", required_argument, nullptr, OPT_SYSINFO},
        {"ask-command", required_argument, nullptr, OPT_ASK},
        {nullptr, 0, nullptr, 0},
    };
    DaemonConfig config;
    std::vector<std::string> dirs;
    std::string system_info;
    config.ask_command = ask_command_from_env();
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, nullptr)) != -1) {
        switch (c) {
        case 'h':
            std::fputs(kUsage, stdout);
            std::exit(0);
        case OPT_POLICY:
            dirs.emplace_back(optarg);
            break;
        case OPT_DIR:
            append_policy_dirs(dirs, optarg);
            break;
        case OPT_SOCKET:
            config.socket_path = optarg;
            break;
        case OPT_EVAL:
            config.eval_socket_path = optarg;
            break;
        case OPT_GUI:
            config.gui_socket_path = optarg;
            break;
        case OPT_SYSINFO:
            system_info = optarg;
            break;
        case OPT_ASK:
            config.ask_command = optarg;
            break;
        case ':':
            usage_error(std::string("argument ") + argv[optind - 1] + ": expected one argument");
        default:
            usage_error(std::string("unrecognized arguments: ") + argv[optind - 1]);
        }
    }
    if (optind < argc) usage_error(std::string("unrecognized arguments: ") + argv[optind]);
    config.paths = policy_paths_from(dirs);
    config.system_info_file = SystemInfoSource::from_option_or_env(system_info).file();
    return config;
}

} // namespace

int main(int argc, char** argv) {
    io::require_standard_fds(kProgram);
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
