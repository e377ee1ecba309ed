#include "lab/supervisor.h"

#include "io/fd.h"
#include "io/process.h"
#include "io/unix_address.h"
#include "lab/calllog.h"
#include "lab/launch.h"
#include "lab/policy_tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

namespace qrexec::lab {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void remove_runtime_files(const StatePaths& paths) {
    std::error_code ec;
    for (const auto& dir : {paths.daemon_dir(), paths.vchan_dir(), paths.run_dir(), paths.ask_dir(),
                            paths.empty_dir(), paths.bin_dir()})
        fs::remove_all(dir, ec);
    for (const auto& file :
         {paths.policy_socket(), paths.policy_tap_socket(), paths.root + "/policy.EvalSimple.sock",
          paths.root + "/policy.EvalGUI.sock", paths.components(), paths.supervisor_pid(),
          paths.lab_json(), paths.system_info(), paths.ask_command()})
        fs::remove(file, ec);
}

namespace {

void log_line(const std::string& text) {
    // The supervisor's stderr is logs/supervisor.log.
    fmt::print(stderr, "{} {}\n", static_cast<long long>(now_seconds()), text);
}

bool is_socket(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

struct Running {
    Component info;
    std::vector<std::string> ready_paths; // sockets whose existence means "ready"
    std::vector<std::string> ready_files; // files (e.g. a pid file) that mean the same
    int stop_rank = 0;                    // lower stops first
};

class Supervisor {
  public:
    Supervisor(StatePaths paths, int ready_fd) : paths_(std::move(paths)), ready_fd_(ready_fd) {}

    int run() {
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        sigset_t mask;
        sigemptyset(&mask);
        for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE})
            sigaddset(&mask, sig);
        sigprocmask(SIG_BLOCK, &mask, nullptr);
        signal_fd_.reset(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
        inotify_.reset(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));

        std::string error;
        auto text = read_file(paths_.lab_json());
        auto state = text ? lab_state_from_json(*text, &error) : std::nullopt;
        if (!state) return fail("cannot read " + paths_.lab_json() + ": " + error);
        state_ = std::move(*state);

        for (const auto& dir : {paths_.root, paths_.daemon_dir()})
            inotify_add_watch(inotify_.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO);
        for (const auto& d : state_.lab.domains)
            inotify_add_watch(inotify_.get(), paths_.domain_run_dir(d.name).c_str(),
                              IN_CREATE | IN_MOVED_TO);
        // sshd's pid file (a multi-host lab): unwatched, `up` took the whole 30 s deadline.
        if (state_.lab.air.enabled())
            inotify_add_watch(inotify_.get(),
                              fs::path(state_.lab.air.sshd_pid_file).parent_path().c_str(),
                              IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);

        if (!open_tap(error)) return fail(error);
        if (!start_all(error)) return fail(error);
        if (!wait_ready(error)) return fail(error);
        ready_ = true;
        publish();
        report("ok");
        log_line("lab is up");
        watch_until_stopped();
        stop_all();
        return 0;
    }

  private:
    int fail(const std::string& error) {
        log_line("startup failed: " + error);
        report("error: " + error);
        stop_all();
        return 1;
    }

    void report(const std::string& text) {
        if (ready_fd_ < 0) return;
        io::write_all(ready_fd_, text + "\n");
        close(ready_fd_);
        ready_fd_ = -1;
    }

    void publish() { write_file_atomic(paths_.components(), components_to_json(table(), ready_)); }

    std::vector<Component> table() const {
        std::vector<Component> out;
        for (const auto& r : running_)
            out.push_back(r.info);
        return out;
    }

    std::map<std::string, std::string> base_env() const {
        auto env = current_environment();
        env.erase("NOTIFY_SOCKET");
        env["VCHAN_SOCKET_DIR"] = paths_.vchan_dir();
        env["QREXEC_POLICY_DIR"] = state_.lab.policy;
        env["QREXEC_SYSTEM_INFO"] = paths_.system_info();
        env["QREXEC_ASK_COMMAND"] = paths_.ask_command();
        env["QREXEC_LAB_STATE_DIR"] = paths_.root;
        return env;
    }

    bool spawn(Running r, const LaunchPlan& plan) {
        io::Fd log(open(r.info.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        io::Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!log || !null) return false;
        log_line(fmt::format("starting {}: {}", r.info.name, fmt::join(plan.argv, " ")));
        pid_t parent = getpid();
        io::Child child = io::spawn({null.get(), log.get(), log.get()}, [&]() -> int {
            io::close_fds_from(3);
            // Own process group: `down` can signal a component with its helpers.
            setpgid(0, 0);
            if (getppid() != parent) return 1;
            LaunchPlan p = plan;
            // Nothing outlives the supervisor, even if it is killed.
            p.parent_death_signal = SIGTERM;
            exec_plan(p);
            return 127;
        });
        pid_t pid = child.pid();
        child.detach();
        r.info.process = process_id_of(pid).value_or(ProcessId{pid, 0});
        r.info.state = "starting";
        running_.push_back(std::move(r));
        publish();
        return true;
    }

    bool start_all(std::string& error) {
        const Binaries& b = state_.bin;
        // The policy daemon first: daemons ask it for every VM-initiated call.
        {
            Running r;
            r.info = {
                "policy-daemon", "", "policy-daemon", {}, "", "", paths_.log_file("policy-daemon")};
            r.ready_paths = {paths_.policy_socket()};
            r.stop_rank = 2;
            LaunchPlan plan;
            // Every socket in the state dir: the defaults are system paths.
            plan.argv = {b.policy_daemon, "--socket-path=" + paths_.policy_socket(),
                         "--eval-socket-path=" + paths_.root + "/policy.EvalSimple.sock",
                         "--gui-socket-path=" + paths_.root + "/policy.EvalGUI.sock"};
            plan.env = base_env();
            if (!spawn(std::move(r), plan))
                return (error = "cannot start the policy daemon"), false;
        }
        if (state_.lab.air.enabled() && !start_sshd(error)) return false;
        for (const auto& d : state_.lab.domains) {
            Running r;
            r.info = {
                "agent:" + d.name, d.name, "agent", {}, "", "", paths_.log_file("agent-" + d.name)};
            r.ready_paths = {paths_.agent_socket(d.name)};
            r.stop_rank = 1;
            auto env = base_env();
            env["VCHAN_DOMAIN"] = std::to_string(d.domid);
            env["QREXEC_SERVICE_PATH"] = d.services;
            env["QUBES_RPC_CONFIG_PATH"] = d.rpc_config.empty() ? paths_.empty_dir() : d.rpc_config;
            env.erase("QREXEC_ASK_COMMAND");
            env.erase("QREXEC_POLICY_DIR");
            env.erase("QREXEC_SYSTEM_INFO");
            if (state_.lab.air.enabled() && d.name == state_.lab.air.relay) {
                // The relay runs the transport service (qubesair.SSHProxy).
                env["QREXEC_SERVICE_PATH"] = d.services + ":" + state_.lab.air.services_dir;
            }
            LaunchPlan plan = plan_in_domain(
                state_, paths_, d,
                {b.agent, "--no-fork-server", "--agent-socket=" + paths_.agent_socket(d.name)}, env,
                {b.agent});
            if (!spawn(std::move(r), plan))
                return (error = "cannot start the agent of " + d.name), false;
        }
        for (const auto& d : state_.lab.domains) {
            Running r;
            r.info = {"daemon:" + d.name,
                      d.name,
                      "daemon",
                      {},
                      "",
                      "",
                      paths_.log_file("daemon-" + d.name)};
            r.ready_paths = {paths_.daemon_socket(d.domid)};
            r.stop_rank = 0;
            auto env = base_env();
            env["VCHAN_DOMAIN"] = "0";
            env["QREXEC_STARTUP_NOWAIT"] = "1";
            env["QREXEC_SERVICE_PATH"] =
                state_.lab.dom0.services.empty() ? paths_.empty_dir() : state_.lab.dom0.services;
            env["QUBES_RPC_CONFIG_PATH"] = state_.lab.dom0.rpc_config.empty()
                                               ? paths_.empty_dir()
                                               : state_.lab.dom0.rpc_config;
            std::string user = d.user.empty() ? state_.invoking_user : d.user;
            LaunchPlan plan;
            plan.argv = {b.daemon,
                         "--uuid=" + d.uuid,
                         "--socket-dir=" + paths_.daemon_dir(),
                         "--policy-program=" + b.policy_exec,
                         "--policy-socket=" + paths_.policy_tap_socket(),
                         "--qrexec-client=" + b.client,
                         "--direct",
                         std::to_string(d.domid),
                         d.name,
                         user};
            plan.env = env;
            plan.umask0 = lab_has_other_users(state_);
            if (!spawn(std::move(r), plan))
                return (error = "cannot start the daemon of " + d.name), false;
        }
        return true;
    }

    // A host of a multi-host lab: its OpenSSH server, in the host's network
    // namespace (which the whole supervisor is in). Ready once its pid file is.
    bool start_sshd(std::string& error) {
        const AirSide& air = state_.lab.air;
        std::error_code ec;
        fs::remove(air.sshd_pid_file, ec);
        Running r;
        r.info = {"sshd", "", "sshd", {}, "", "", paths_.log_file("sshd")};
        r.ready_files = {air.sshd_pid_file};
        r.stop_rank = 0;
        LaunchPlan plan;
        plan.argv = {air.sshd, "-D", "-e", "-f", air.sshd_config};
        plan.env = base_env();
        if (!spawn(std::move(r), plan)) return (error = "cannot start sshd"), false;
        return true;
    }

    // Handles SIGCHLD & co.; returns false when asked to stop.
    bool handle_signals() {
        bool keep_going = true;
        signalfd_siginfo info{};
        while (read(signal_fd_.get(), &info, sizeof info) == sizeof info) {
            if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) keep_going = false;
        }
        reap();
        return keep_going;
    }

    void reap() {
        int status = 0;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (auto& r : running_) {
                if (r.info.process.pid != pid || r.info.state == "exited" ||
                    r.info.state == "stopped")
                    continue;
                r.info.detail = describe_wait_status(status);
                r.info.state = stopping_ ? "stopped" : "exited";
                log_line(fmt::format("{} {}", r.info.name, r.info.detail));
                if (!stopping_) {
                    CallRecord event;
                    event.kind = "event";
                    event.time = now_seconds();
                    event.component = r.info.name;
                    event.detail = fmt::format("{} (pid {})", r.info.detail, pid);
                    append_line(paths_.calls_log(), record_to_json(event));
                }
                publish();
            }
        }
    }

    bool wait_ready(std::string& error) {
        auto deadline = Clock::now() + std::chrono::seconds(30);
        for (;;) {
            bool all = true;
            for (auto& r : running_) {
                if (r.info.state == "exited") {
                    auto tail = read_file(r.info.log).value_or("");
                    if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
                    error = fmt::format("{} {} before it was ready; its log ({}):\n{}", r.info.name,
                                        r.info.detail, r.info.log, tail);
                    return false;
                }
                bool ready = true;
                for (const auto& p : r.ready_paths)
                    ready = ready && is_socket(p);
                for (const auto& p : r.ready_files)
                    ready = ready && fs::exists(p);
                if (ready && r.info.state == "starting") {
                    r.info.state = "running";
                    publish();
                }
                all = all && ready;
            }
            if (all) return true;
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) {
                std::string waiting;
                for (const auto& r : running_)
                    if (r.info.state == "starting")
                        waiting += fmt::format(" {} (see {})", r.info.name, r.info.log);
                error = "timed out waiting for:" + waiting;
                return false;
            }
            pollfd fds[3] = {{signal_fd_.get(), POLLIN, 0},
                             {inotify_.get(), POLLIN, 0},
                             {tap_.get(), POLLIN, 0}};
            poll(fds, 3, static_cast<int>(left.count()));
            if (fds[1].revents) drain(inotify_.get());
            if (fds[2].revents) accept_tap();
            if (fds[0].revents && !handle_signals()) {
                error = "interrupted";
                return false;
            }
        }
    }

    bool open_tap(std::string& error) {
        std::string path = paths_.policy_tap_socket();
        auto addr = io::UnixAddress::from_path(path);
        if (!addr) return (error = "tap path too long"), false;
        tap_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        unlink(path.c_str());
        if (bind(tap_.get(), addr->get(), addr->size()) != 0 || listen(tap_.get(), 64) != 0) {
            error = fmt::format("cannot listen on {}: {}", path, std::strerror(errno));
            return false;
        }
        return true;
    }

    // One forked helper per policy request: an `ask` may wait for a person, and
    // the supervisor must keep watching its components meanwhile.
    void accept_tap() {
        for (;;) {
            int conn = accept4(tap_.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (conn < 0) return;
            pid_t pid = fork();
            if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, nullptr);
                serve_policy_request(conn, state_, paths_);
                _exit(0);
            }
            close(conn);
        }
    }

    static void drain(int fd) {
        char buf[4096];
        while (read(fd, buf, sizeof buf) > 0) {
        }
    }

    void watch_until_stopped() {
        for (;;) {
            pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {tap_.get(), POLLIN, 0}};
            if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
            if (fds[1].revents) accept_tap();
            if (!handle_signals()) return;
        }
    }

    // Our children (components, and orphans we adopted as subreaper).
    static std::vector<pid_t> children() {
        std::vector<pid_t> out;
        pid_t self = getpid();
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator("/proc", ec)) {
            std::string name = entry.path().filename().string();
            if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
            auto stat = read_file(entry.path().string() + "/stat");
            if (!stat) continue;
            auto close = stat->rfind(')');
            if (close == std::string::npos) continue;
            char st = 0;
            int ppid = 0;
            if (sscanf(stat->c_str() + close + 2, "%c %d", &st, &ppid) == 2 && ppid == self)
                out.push_back(std::stoi(name));
        }
        return out;
    }

    void signal_rank(int rank, int sig) {
        for (auto& r : running_) {
            if (r.stop_rank != rank || r.info.state == "exited" || r.info.state == "stopped")
                continue;
            // The whole group: per-call handlers and services go too.
            kill(-r.info.process.pid, sig);
            kill(r.info.process.pid, sig);
        }
    }

    bool rank_done(int rank) {
        for (auto& r : running_)
            if (r.stop_rank == rank && r.info.state != "exited" && r.info.state != "stopped")
                return false;
        return true;
    }

    void wait_until(const std::function<bool()>& done, std::chrono::milliseconds budget) {
        auto deadline = Clock::now() + budget;
        while (!done()) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return;
            pollfd fds[1] = {{signal_fd_.get(), POLLIN, 0}};
            poll(fds, 1, static_cast<int>(std::min<long long>(left.count(), 100)));
            handle_signals();
        }
    }

    void stop_all() {
        stopping_ = true;
        // Daemons first (they are the agents' and the policy daemon's clients).
        for (int rank = 0; rank <= 2; ++rank) {
            signal_rank(rank, SIGTERM);
            wait_until([&] { return rank_done(rank); }, std::chrono::seconds(3));
            signal_rank(rank, SIGKILL);
            wait_until([&] { return rank_done(rank); }, std::chrono::seconds(2));
        }
        // Whatever is left: adopted orphans (services, handlers).
        for (int round = 0; round < 2; ++round) {
            auto left = children();
            if (left.empty()) break;
            for (pid_t pid : left)
                kill(pid, round == 0 ? SIGTERM : SIGKILL);
            wait_until([] { return children().empty(); }, std::chrono::seconds(2));
        }
        reap();
        remove_runtime_files(paths_);
        log_line("lab is down");
    }

    StatePaths paths_;
    int ready_fd_;
    LabState state_;
    io::Fd signal_fd_, inotify_, tap_;
    std::vector<Running> running_;
    bool ready_ = false;
    bool stopping_ = false;
};

} // namespace

int run_supervisor(const StatePaths& paths, int ready_fd) {
    return Supervisor(paths, ready_fd).run();
}

} // namespace qrexec::lab
