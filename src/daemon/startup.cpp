// qrexec-daemon startup (DAEMON.md §1-§2): options, fork with a status pipe,
// log file, agent connection + handshake, client socket, then the loop.
#include "daemon/startup.h"

#include "daemon/daemon.h"
#include "daemon/options.h"
#include "io/event_loop.h"
#include "io/log.h"
#include "io/privileges.h"
#include "qubesd/client.h"
#include "transport/vchan.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qrexec::daemon {

namespace {

constexpr const char* kDefaultPolicySocket = "/run/qubes/policy.sock";
constexpr const char* kDefaultLogDir = "/var/log/qubes";

const char* env(const char* name) {
    return std::getenv(name);
}

bool is_executable(const std::string& path) {
    return ::access(path.c_str(), X_OK) == 0;
}

// qrexec-client next to our own executable (installed layout), or in the
// sibling app directory (build tree), else the system one.
std::string default_qrexec_client() {
    char self[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        std::string dir(self, static_cast<size_t>(n));
        dir.resize(dir.rfind('/') + 1);
        for (const char* candidate : {"qrexec-client", "../qrexec-client/qrexec-client"})
            if (is_executable(dir + candidate)) return dir + candidate;
    }
    return "/usr/bin/qrexec-client";
}

std::string absolute(const std::string& path) {
    if (!path.empty() && path.front() == '/') return path;
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) return path;
    return std::string(cwd) + "/" + path;
}

// Foreground parent: waits for the child's status byte (§2 step 2).
int wait_for_child(int status_fd, const Options& options, int timeout_seconds) {
    if (!options.quiet) QLOG("Waiting for VM's qrexec agent.");
    for (;;) {
        pollfd p{status_fd, POLLIN, 0};
        int r = ::poll(&p, 1, 1000);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            if (!options.quiet) {
                ssize_t ignored = ::write(2, ".", 1);
                (void)ignored;
            }
            continue;
        }
        unsigned char status = 0;
        ssize_t n;
        do {
            n = ::read(status_fd, &status, 1);
        } while (n < 0 && errno == EINTR);
        if (n == 1 && status == 0) {
            if (!options.quiet) QLOG("Connected to VM");
            return 0;
        }
        if (n == 1 && status == 1) {
            QLOG("Cannot connect to '{}' qrexec agent for {} seconds, giving up", options.name,
                 timeout_seconds);
            return 3;
        }
        QLOG("Connection to the VM failed");
        return 1;
    }
}

void report(io::Fd& status_pipe, unsigned char status) {
    if (!status_pipe) return;
    ssize_t ignored = ::write(status_pipe.get(), &status, 1);
    (void)ignored;
    status_pipe.reset();
}

bool redirect_to_log(const Options& options) {
    const char* dir = env("QREXEC_LOG_DIR");
    std::string path =
        std::string(dir && *dir ? dir : kDefaultLogDir) + "/qrexec." + options.name + ".log";
    mode_t old = ::umask(0007);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
    ::umask(old);
    if (fd < 0) {
        QLOG_ERRNO("cannot open log file {}", path);
        return false;
    }
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    return true;
}

int serve(const Options& options, io::Fd& status_pipe, int timeout_seconds, bool nowait) {
    if (::chdir(options.socket_dir.c_str()) != 0) {
        QLOG_ERRNO("chdir to {} failed", options.socket_dir);
        return 1;
    }
    if (!options.direct) {
        if (!redirect_to_log(options)) return 1;
        ::setsid();
    }

    DaemonConfig config;
    auto& settings = config.settings;
    settings.domname = options.name;
    settings.domid = static_cast<uint32_t>(options.domid);
    settings.socket_dir = absolute(options.socket_dir);
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd)) settings.socket_dir = cwd;
    const char* policy_env = env("QREXEC_POLICY_SOCKET");
    settings.policy_socket = options.policy_socket       ? *options.policy_socket
                             : policy_env && *policy_env ? policy_env
                                                         : kDefaultPolicySocket;
    settings.qubesd_socket = qubesd::socket_path_from_env();
    settings.policy_program = options.policy_program;
    settings.qrexec_client =
        options.qrexec_client ? *options.qrexec_client : default_qrexec_client();
    settings.timeouts = timeouts_from_environment(env("QREXEC_REQUEST_TIMEOUT"));
    if (auto idle = seconds_from_environment(env("QREXEC_CLIENT_IDLE_TIMEOUT")))
        settings.timeouts.client_idle = *idle;
    config.uuid = options.uuid;
    config.default_user = options.default_user;
    if (options.policy_in_process || env_flag_enabled(env("QREXEC_POLICY_IN_PROCESS"))) {
        config.in_process = InProcessConfig::from_env();
        const auto& in_process = *config.in_process;
        std::string dirs;
        for (const auto& dir : in_process.paths.dirs)
            dirs += (dirs.empty() ? "" : ":") + dir;
        QLOG("evaluating the policy in-process: policy {}, system info {}, ask command {}", dirs,
             in_process.system_info_file.empty() ? "from qubesd (" + in_process.qubesd_socket + ")"
                                                 : in_process.system_info_file,
             in_process.ask_command.empty() ? "none (asks are denied)" : in_process.ask_command);
    }

    auto backend = transport::default_backend();
    int timeout_ms = nowait ? -1 : timeout_seconds * 1000;
    auto channel =
        backend->connect(options.domid, static_cast<int>(protocol::kVchanBasePort), timeout_ms);
    if (!channel) {
        report(status_pipe, 1);
        return 3;
    }
    auto version = agent_handshake(*channel, timeout_ms);
    if (!version) return 1;

    // The binary may be installed setuid/setgid: drop that now.
    if (::setgid(::getgid()) != 0 || ::setuid(::getuid()) != 0) {
        QLOG_ERRNO("cannot drop privileges");
        return 1;
    }
    if (auto why = io::verify_dropped_privileges(::getuid(), ::getgid())) {
        QLOG("privilege drop incomplete: {}", *why);
        return 1;
    }

    ::signal(SIGPIPE, SIG_IGN);
    io::EventLoop loop;
    auto signals = io::make_signal_fd({SIGTERM});
    Daemon daemon(loop, std::move(config), std::move(backend));
    daemon.attach_agent(std::move(channel), *version);
    if (!daemon.create_socket()) return 1;
    report(status_pipe, 0);
    return daemon.run(signals.get());
}

} // namespace

int daemon_main(int argc, char* argv[]) {
    io::require_standard_fds("qrexec-daemon");
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd > 0) {
        ::dup2(null_fd, 0);
        ::close(null_fd);
    }

    auto parsed = parse_options(argc, argv);
    if (!parsed.options) {
        if (!parsed.message.empty()) {
            if (parsed.log_message)
                QLOG("{}", parsed.message);
            else
                std::fprintf(stderr, "%s\n", parsed.message.c_str());
        }
        if (parsed.show_usage) std::fputs(usage_text(argv[0]).c_str(), stderr);
        return parsed.exit_code;
    }
    const Options& options = *parsed.options;
    int timeout_seconds = startup_timeout_seconds(env("QREXEC_STARTUP_TIMEOUT"));
    bool nowait = env("QREXEC_STARTUP_NOWAIT") != nullptr;

    io::Fd status_pipe;
    if (!options.direct) {
        auto pipe = io::make_pipe();
        pid_t pid = ::fork();
        if (pid < 0) {
            QLOG_ERRNO("fork failed");
            return 1;
        }
        if (pid > 0) {
            pipe.second.reset();
            if (nowait) return 0;
            return wait_for_child(pipe.first.get(), options, timeout_seconds);
        }
        pipe.first.reset();
        status_pipe = std::move(pipe.second);
    }
    try {
        return serve(options, status_pipe, timeout_seconds, nowait);
    } catch (const DaemonExit& e) {
        return e.code;
    } catch (const std::exception& e) {
        QLOG("fatal error: {}", e.what());
        return 1;
    }
}

} // namespace qrexec::daemon
