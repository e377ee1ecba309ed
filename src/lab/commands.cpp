#include "lab/commands.h"

#include "io/fd.h"
#include "io/process.h"
#include "lab/calllog.h"
#include "lab/embedded.h"
#include "lab/launch.h"
#include "lab/policy_tap.h"
#include "lab/policy_view.h"
#include "lab/relay.h"
#include "lab/state.h"
#include "lab/supervisor.h"
#include "lab/trace.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>

namespace qrexec::lab {
namespace fs = std::filesystem;
using nlohmann::json;

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
else $XDG_RUNTIME_DIR/qrexec-lab, else /tmp/qrexec-lab-$UID.
Binaries are found in $QREXEC_LAB_BIN_DIR, else next to qrexec-lab.
)";

const std::map<std::string, std::string>& command_help() {
    static const std::map<std::string, std::string> help{
        {"up", R"(usage: qrexec-lab up [LAB]

Validates LAB (default ./lab.toml), then starts in the background the policy
daemon and, for each domain, a qrexec-agent and a qrexec-daemon. Returns once
every socket is there (agents connected to their daemons), and prints the
domains. If the lab is already up, says so and exits 0.
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

int usage_error(const std::string& message, const std::string& command = "") {
    fmt::print(stderr, "qrexec-lab: {}\n", message);
    if (!command.empty())
        fmt::print(stderr, "try 'qrexec-lab {} --help'\n", command);
    else
        fmt::print(stderr, "try 'qrexec-lab --help'\n");
    return 2;
}

// ---------------------------------------------------------------------------
// Lab state helpers.

struct Context {
    StatePaths paths;
};

std::string current_user_name() {
    if (struct passwd* pw = getpwuid(getuid())) return pw->pw_name;
    return std::to_string(getuid());
}

std::optional<ProcessId> supervisor_of(const StatePaths& paths) {
    auto text = read_file(paths.supervisor_pid());
    if (!text) return std::nullopt;
    auto id = process_id_from_text(*text);
    if (!id || !id->alive()) return std::nullopt;
    return id;
}

std::optional<LabState> load_running(const StatePaths& paths, bool quiet = false) {
    if (!supervisor_of(paths)) {
        if (!quiet)
            fmt::print(stderr,
                       "qrexec-lab: no lab is up (state dir {})\n  hint: start one with "
                       "'qrexec-lab up LAB' (or try 'qrexec-lab demo')\n",
                       paths.root);
        return std::nullopt;
    }
    std::string error;
    auto text = read_file(paths.lab_json());
    auto state = text ? lab_state_from_json(*text, &error) : std::nullopt;
    if (!state && !quiet)
        fmt::print(stderr, "qrexec-lab: cannot read {}: {}\n", paths.lab_json(), error);
    return state;
}

std::string component_text(const std::vector<Component>& table, const std::string& name) {
    for (const auto& c : table) {
        if (c.name != name) continue;
        if (c.state == "running" || c.state == "starting") {
            if (!c.process.alive()) return "DEAD (not yet recorded)";
            return fmt::format("{} (pid {})", c.state, c.process.pid);
        }
        return fmt::format("{}: {}", c.state == "exited" ? "DEAD" : c.state, c.detail);
    }
    return "-";
}

bool print_status(const StatePaths& paths, const LabState& state) {
    bool ready = false;
    auto table = components_from_json(read_file(paths.components()).value_or("{}"), &ready);
    fmt::print("lab '{}' ({}), state dir {}\n", state.lab.name,
               state.lab.file.empty() ? "built-in example" : state.lab.file, paths.root);
    fmt::print("{:<14} {:>3}  {:<12} {:<16} {:<10} {:<9} {:<22} {}\n", "DOMAIN", "ID", "TYPE",
               "TAGS", "RUNS AS", "ISOLATION", "AGENT", "DAEMON");
    fmt::print("{:<14} {:>3}  {:<12} {:<16} {:<10} {:<9} {:<22} {}\n", "dom0", 0, "AdminVM", "-",
               state.invoking_user, "-", "-",
               "(policy daemon) " + component_text(table, "policy-daemon"));
    bool healthy = true;
    for (const auto& c : table)
        if (c.state == "exited" || !c.process.alive()) healthy = false;
    for (const auto& d : state.lab.domains) {
        std::string tags;
        for (const auto& t : d.tags)
            tags += (tags.empty() ? "" : ",") + t;
        fmt::print("{:<14} {:>3}  {:<12} {:<16} {:<10} {:<9} {:<22} {}\n", d.name, d.domid, d.type,
                   tags.empty() ? "-" : tags, d.user.empty() ? state.invoking_user : d.user,
                   isolation_name(d.isolation), component_text(table, "agent:" + d.name),
                   component_text(table, "daemon:" + d.name));
    }
    if (!healthy)
        fmt::print("some components are not running: see 'qrexec-lab log' and the logs in "
                   "{}\n",
                   paths.logs_dir());
    return healthy;
}

// Kills what a dead supervisor left behind (by recorded pid + start time) and
// removes runtime files.
void clean_stale(const StatePaths& paths) {
    auto table = components_from_json(read_file(paths.components()).value_or("{}"), nullptr);
    for (const auto& c : table) {
        if (!c.process.alive()) continue;
        kill(-c.process.pid, SIGKILL);
        kill(c.process.pid, SIGKILL);
    }
    remove_runtime_files(paths);
}

bool make_dir(const std::string& path, mode_t mode) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) return false;
    return chmod(path.c_str(), mode) == 0;
}

// ---------------------------------------------------------------------------
// up

std::optional<Binaries> resolve_binaries(const Lab& lab, std::string& error) {
    Binaries b;
    struct Want {
        std::string* slot;
        const char* name;
        bool required;
    };
    bool sandbox = false;
    for (const auto& d : lab.domains)
        sandbox = sandbox || d.isolation == Isolation::sandbox;
    Want wants[] = {{&b.agent, "qrexec-agent", true},
                    {&b.daemon, "qrexec-daemon", true},
                    {&b.client, "qrexec-client", true},
                    {&b.client_vm, "qrexec-client-vm", true},
                    {&b.policy_daemon, "qrexec-policy-daemon", true},
                    {&b.policy_exec, "qrexec-policy-exec", true},
                    {&b.policy, "qrexec-policy", false}};
    std::string missing;
    for (auto& w : wants) {
        *w.slot = find_binary(w.name);
        if (w.slot->empty() && w.required) missing += std::string(" ") + w.name;
    }
    if (!missing.empty()) {
        error = fmt::format("cannot find:{}\n  hint: build them, or point QREXEC_LAB_BIN_DIR at "
                            "the folder (or build dir) that has them",
                            missing);
        return std::nullopt;
    }
    b.lab = self_executable();
    b.bwrap = find_in_path("bwrap");
    if (sandbox && b.bwrap.empty()) {
        error = "a domain has isolation = \"sandbox\" but bwrap is not installed\n  hint: apt "
                "install bubblewrap, or use isolation = \"none\"";
        return std::nullopt;
    }
    return b;
}

std::string lab_file_argument(const std::vector<std::string>& args) {
    if (!args.empty()) return args[0];
    return "lab.toml";
}

int print_diagnostics(const std::vector<Diagnostic>& errors) {
    for (const auto& e : errors)
        fmt::print(stderr, "{}\n", e.format());
    fmt::print(stderr, "qrexec-lab: the lab has {} error{}; nothing was started\n", errors.size(),
               errors.size() == 1 ? "" : "s");
    return 2;
}

// The lab file, then its policy (a policy that fails to load denies everything).
ParseResult load_and_check(const std::string& file) {
    auto result = load_lab(file, RealHost());
    if (result.lab)
        if (auto problem = check_policy(*result.lab)) {
            result.errors.push_back(*problem);
            result.lab.reset();
        }
    return result;
}

int cmd_check(const Context&, const std::vector<std::string>& args) {
    auto result = load_and_check(lab_file_argument(args));
    if (!result.lab) return print_diagnostics(result.errors);
    fmt::print("{}: ok ({} domains)\n", result.lab->file, result.lab->domains.size());
    return 0;
}

bool socket_paths_fit(const StatePaths& paths, std::string& error) {
    // Longest names: qrexec.uuid:<36> in the daemon dir, vchan.N.N.NNN.sock.
    size_t longest = std::max(paths.daemon_dir().size() + 13 + 36, paths.vchan_dir().size() + 26);
    if (longest < sizeof(sockaddr_un::sun_path)) return true;
    error = fmt::format("the state dir {} is too deep for UNIX socket names ({} > {} bytes)\n"
                        "  hint: use a shorter --state-dir",
                        paths.root, longest, sizeof(sockaddr_un::sun_path) - 1);
    return false;
}

int start_lab(const Context& ctx, const Lab& lab) {
    const StatePaths& paths = ctx.paths;
    if (auto running = load_running(paths, true)) {
        if (running->lab.file == lab.file) {
            fmt::print("lab '{}' is already up\n", running->lab.name);
            print_status(paths, *running);
            return 0;
        }
        fmt::print(stderr,
                   "qrexec-lab: another lab ('{}', {}) is up in {}\n  hint: 'qrexec-lab down' "
                   "first, or use another --state-dir\n",
                   running->lab.name, running->lab.file, paths.root);
        return 1;
    }
    clean_stale(paths);
    // `log` shows this lab's calls: the previous lab's log is kept beside it.
    std::error_code rotate_error;
    if (fs::exists(paths.calls_log()))
        fs::rename(paths.calls_log(), paths.calls_log() + ".previous", rotate_error);
    std::string error;
    auto bin = resolve_binaries(lab, error);
    if (!bin) {
        fmt::print(stderr, "qrexec-lab: {}\n", error);
        return 1;
    }
    if (!socket_paths_fit(paths, error)) {
        fmt::print(stderr, "qrexec-lab: {}\n", error);
        return 1;
    }
    LabState state{lab, *bin, current_user_name(), getuid()};
    bool shared = lab_has_other_users(state);
    // Other users' agents must reach the vchan sockets and their own run dir.
    if (!make_dir(paths.root, shared ? 0711 : 0700) || !make_dir(paths.daemon_dir(), 0700) ||
        !make_dir(paths.vchan_dir(), shared ? 01777 : 0700) ||
        !make_dir(paths.run_dir(), shared ? 0711 : 0700) || !make_dir(paths.logs_dir(), 0700) ||
        !make_dir(paths.ask_dir(), 0700) || !make_dir(paths.empty_dir(), 0755)) {
        fmt::print(stderr, "qrexec-lab: cannot create the state dir {}: {}\n", paths.root,
                   std::strerror(errno));
        return 1;
    }
    for (const auto& d : lab.domains) {
        std::string dir = paths.domain_run_dir(d.name);
        make_dir(dir, 0755);
        if (!d.user.empty() && d.user != state.invoking_user)
            if (struct passwd* pw = getpwnam(d.user.c_str()))
                if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0)
                    fmt::print(stderr, "qrexec-lab: warning: cannot chown {}\n", dir);
    }
    write_file_atomic(paths.lab_json(), lab_state_to_json(state));
    write_file_atomic(paths.system_info(), system_info_json(lab));
    write_file_atomic(paths.ask_command(),
                      fmt::format("#!/bin/sh\n# qrexec-lab: answers policy 'ask' prompts\n"
                                  "exec '{}' --state-dir='{}' ask \"$@\"\n",
                                  bin->lab, paths.root),
                      0755);
    // Fresh logs per run; the call log accumulates.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(paths.logs_dir(), ec))
        fs::remove(entry.path(), ec);

    io::FdPair ready = io::make_pipe();
    std::string supervisor_log = paths.log_file("supervisor");
    io::Fd log(open(supervisor_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    io::Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    int ready_write = ready.second.get();
    std::string self = bin->lab;
    io::Child sup = io::spawn({null.get(), log.get(), log.get()}, [&]() -> int {
        setsid();
        if (dup2(ready_write, 3) < 0) return 127;
        io::close_fds_from(4);
        execl(self.c_str(), "qrexec-lab", ("--state-dir=" + paths.root).c_str(), "supervise",
              "--ready-fd=3", static_cast<char*>(nullptr));
        return 127;
    });
    ready.second.reset();
    auto id = process_id_of(sup.pid()).value_or(ProcessId{sup.pid(), 0});
    write_file_atomic(paths.supervisor_pid(), process_id_to_text(id));

    // The supervisor reports once: "ok" or "error: ...", then keeps running (ok).
    std::string answer;
    char buf[4096];
    ssize_t n;
    while ((n = read(ready.first.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) answer.append(buf, static_cast<size_t>(n));
    if (answer.rfind("ok", 0) == 0) {
        sup.detach(); // it outlives us, on purpose
        print_status(paths, state);
        fmt::print("calls: qrexec-lab call SOURCE TARGET SERVICE   log: qrexec-lab log   stop: "
                   "qrexec-lab down\n");
        return 0;
    }
    sup.wait();
    if (answer.empty())
        answer = fmt::format("the supervisor ended without reporting; see {}", supervisor_log);
    else if (answer.rfind("error: ", 0) == 0)
        answer = answer.substr(7);
    clean_stale(paths);
    fmt::print(stderr, "qrexec-lab: the lab did not come up: {}", answer);
    if (answer.back() != '\n') fmt::print(stderr, "\n");
    return 1;
}

int cmd_up(const Context& ctx, const std::vector<std::string>& args) {
    if (args.size() > 1) return usage_error("up takes one lab file", "up");
    auto result = load_and_check(lab_file_argument(args));
    if (!result.lab) return print_diagnostics(result.errors);
    return start_lab(ctx, *result.lab);
}

int cmd_supervise(const Context& ctx, const std::vector<std::string>& args) {
    int ready_fd = -1;
    for (const auto& a : args)
        if (a.rfind("--ready-fd=", 0) == 0) ready_fd = std::stoi(a.substr(11));
    if (ready_fd >= 0) io::set_cloexec(ready_fd);
    return run_supervisor(ctx.paths, ready_fd);
}

int cmd_status(const Context& ctx, const std::vector<std::string>&) {
    if (!supervisor_of(ctx.paths)) {
        bool stale = fs::exists(ctx.paths.components());
        fmt::print("no lab is up (state dir {}){}\n", ctx.paths.root,
                   stale ? "; the supervisor died: run 'qrexec-lab down' to clean up" : "");
        return 3;
    }
    auto state = load_running(ctx.paths);
    if (!state) return 3;
    return print_status(ctx.paths, *state) ? 0 : 1;
}

int cmd_down(const Context& ctx, const std::vector<std::string>&) {
    const StatePaths& paths = ctx.paths;
    std::string name = "lab";
    if (auto text = read_file(paths.lab_json()))
        if (auto state = lab_state_from_json(*text, nullptr))
            name = "lab '" + state->lab.name + "'";
    auto sup = supervisor_of(paths);
    if (sup) {
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, sup->pid, 0));
        kill(sup->pid, SIGTERM);
        // The supervisor stops daemons, agents, the policy daemon, then exits.
        bool gone = false;
        if (pidfd >= 0) {
            gone = io::wait_readable(pidfd, 30000);
            if (!gone) kill(sup->pid, SIGKILL), io::wait_readable(pidfd, 5000);
            close(pidfd);
        }
        (void)gone;
    }
    bool had_state = fs::exists(paths.lab_json()) || fs::exists(paths.components());
    clean_stale(paths);
    if (!sup && !had_state) {
        fmt::print("no lab is up (state dir {})\n", paths.root);
        return 0;
    }
    fmt::print("{} is down\n", name);
    return 0;
}

// ---------------------------------------------------------------------------
// call / run / shell

// The ask socket of a call: the policy's ask helper connects here when an `ask`
// rule needs an answer for this call, and we prompt on our terminal.
struct AskServer {
    io::Fd listener;
    std::string socket_path, record_path;
    std::string last_answer; // "allow:x"/"deny" given at the prompt
    ~AskServer() {
        if (!socket_path.empty()) unlink(socket_path.c_str());
        if (!record_path.empty()) unlink(record_path.c_str());
    }
};

std::unique_ptr<AskServer> open_ask_server(const StatePaths& paths, const std::string& source,
                                           const std::string& target, const std::string& service) {
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) return nullptr; // no terminal: the lab's ask setting decides
    close(tty);
    auto server = std::make_unique<AskServer>();
    server->socket_path = fmt::format("{}/{}.sock", paths.ask_dir(), getpid());
    server->record_path = fmt::format("{}/{}.json", paths.ask_dir(), getpid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (server->socket_path.size() >= sizeof addr.sun_path) return nullptr;
    std::strcpy(addr.sun_path, server->socket_path.c_str());
    server->listener.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    unlink(server->socket_path.c_str());
    if (bind(server->listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(server->listener.get(), 4) != 0)
        return nullptr;
    json record{{"pid", getpid()},
                {"source", source},
                {"target", target},
                {"service", service},
                {"socket", server->socket_path}};
    write_file_atomic(server->record_path, record.dump());
    return server;
}

// One question per connection: a JSON line in, "allow:<target>" or "deny" out.
void answer_one_ask(AskServer& server) {
    io::Fd conn(accept4(server.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    std::string question;
    char buf[4096];
    ssize_t n;
    while (question.size() < 65536 && question.find('\n') == std::string::npos &&
           io::wait_readable(conn.get(), 5000) && (n = read(conn.get(), buf, sizeof buf)) > 0)
        question.append(buf, static_cast<size_t>(n));
    json q = json::parse(question, nullptr, false);
    if (q.is_discarded() || !q.is_object()) return;
    std::vector<std::string> targets;
    if (q.contains("targets") && q["targets"].is_array())
        for (const auto& t : q["targets"])
            if (t.is_string()) targets.push_back(t.get<std::string>());
    std::string def = q.value("default_target", "");
    std::string proposed = q.value("proposed", def);
    io::Fd tty(open("/dev/tty", O_RDWR | O_CLOEXEC));
    std::string reply = "deny";
    if (tty && !targets.empty()) {
        std::string choices;
        for (const auto& t : targets)
            choices += (choices.empty() ? "" : ", ") + t;
        std::string prompt = fmt::format(
            "\n[qrexec-lab] policy asks: allow {} to call {}{}?\n  targets: {}\n  answer "
            "y (allow {}), n (deny) or a target name: ",
            q.value("source", "?"), q.value("service", "?"), q.value("argument", ""), choices,
            proposed.empty() ? targets.front() : proposed);
        io::write_all(tty.get(), prompt);
        std::string line;
        char c;
        while (read(tty.get(), &c, 1) == 1 && c != '\n')
            line += c;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
            line.pop_back();
        std::string chosen;
        if (line == "y" || line == "Y" || line == "yes")
            chosen = proposed.empty() ? targets.front() : proposed;
        else if (std::find(targets.begin(), targets.end(), line) != targets.end())
            chosen = line;
        if (!chosen.empty()) reply = "allow:" + chosen;
        io::write_all(tty.get(), fmt::format("[qrexec-lab] answer: {}\n", reply));
    }
    io::write_all(conn.get(), reply + "\n");
    server.last_answer = reply;
}

const Domain* find_domain(const LabState& state, const std::string& name, const char* command) {
    const Domain* d = state.lab.find(name);
    if (!d) {
        std::string names;
        for (const auto& x : state.lab.domains)
            names += (names.empty() ? "" : ", ") + x.name;
        fmt::print(stderr, "qrexec-lab {}: no domain '{}' in this lab (domains: {})\n", command,
                   name, names);
    }
    return d;
}

int cmd_call(const Context& ctx, const std::vector<std::string>& args) {
    std::vector<std::string> pos, local;
    bool after_dashes = false;
    for (const auto& a : args) {
        if (after_dashes)
            local.push_back(a);
        else if (a == "--")
            after_dashes = true;
        else
            pos.push_back(a);
    }
    if (pos.size() != 3) return usage_error("call needs SOURCE TARGET SERVICE[+ARG]", "call");
    if (after_dashes && local.empty()) return usage_error("no LOCAL_PROGRAM after --", "call");
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const std::string &source = pos[0], &target = pos[1], &service = pos[2];
    if (source == "dom0")
        return usage_error("calls from dom0 are 'qrexec-lab run' (or qrexec-client)", "call");
    const Domain* src = find_domain(*state, source, "call");
    if (!src) return 1;

    std::vector<std::string> argv{state->bin.client_vm,
                                  "--agent-socket=" + ctx.paths.agent_socket(source)};
    bool relay = local.empty();
    if (relay && isatty(1)) argv.push_back("-t"); // what it would do on our terminal
    argv.insert(argv.end(), {target, service});
    std::vector<std::string> ro{state->bin.client_vm};
    if (!local.empty()) {
        // qrexec-client-vm does no PATH search; resolve like a shell would.
        std::string prog = local[0];
        if (prog.find('/') == std::string::npos) {
            std::string found = find_in_path(prog);
            if (found.empty()) {
                fmt::print(stderr, "qrexec-lab call: {}: command not found\n", prog);
                return 127;
            }
            local[0] = found;
        } else {
            local[0] = fs::absolute(prog).string();
        }
        argv.insert(argv.end(), local.begin(), local.end());
    }
    auto env = current_environment();
    env["VCHAN_DOMAIN"] = std::to_string(src->domid);
    env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    LaunchPlan plan = plan_in_domain(*state, ctx.paths, *src, argv, env, ro, true);
    // A sandboxed caller is a process of that domain: it must not need the
    // caller's folder (the cwd stays the domain folder).

    auto ask = open_ask_server(ctx.paths, source, target, service);
    std::vector<ExtraFd> extra;
    if (ask) extra.push_back({ask->listener.get(), [&] { answer_one_ask(*ask); }});

    CallRecord rec;
    rec.time = now_seconds();
    rec.source = source;
    rec.target = target;
    rec.service = service;
    rec.via = "qrexec-lab call";
    auto result = run_relayed(plan, relay, extra);
    if (!result) return 1;
    rec.duration = now_seconds() - rec.time;
    rec.exit_status = result->exit_status;
    if (relay) {
        rec.bytes_in = result->bytes_in;
        rec.bytes_out = result->bytes_out;
    }
    // qrexec-client-vm says 126 exactly when the request was refused.
    rec.decision = result->exit_status == 126 ? "deny" : "allow";
    // Refusals that did not come from the policy (e.g. a dead daemon) still show
    // as "deny" here; the policy tap's record, merged by `log`, says what the
    // policy answered.
    RuleVerdict verdict =
        deciding_rule(state->lab, ctx.paths.system_info(), source, target, service);
    rec.decided_by = verdict.rule;
    if (verdict.outcome == "ask") rec.decision = "ask:" + rec.decision;
    std::string asked = ask_answer_since(ctx.paths, source, service, rec.time);
    if (!asked.empty()) rec.detail = "asked: " + asked;
    append_line(ctx.paths.calls_log(), record_to_json(rec));
    return result->exit_status;
}

int cmd_run(const Context& ctx, const std::vector<std::string>& args) {
    std::string target, user = "DEFAULT";
    std::vector<std::string> command;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (!command.empty())
            command.push_back(a);
        else if (a == "--") {
            if (target.empty()) return usage_error("run needs TARGET before --", "run");
            command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
            if (command.empty()) return usage_error("run needs a COMMAND", "run");
            break;
        } else if (a == "--user" || a == "-u") {
            if (i + 1 >= args.size()) return usage_error("--user needs a value", "run");
            user = args[++i];
        } else if (a.rfind("--user=", 0) == 0) {
            user = a.substr(7);
        } else if (target.empty()) {
            target = a;
        } else {
            command.push_back(a);
        }
    }
    if (target.empty() || command.empty())
        return usage_error("run needs TARGET and COMMAND", "run");
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const Domain* dom = find_domain(*state, target, "run");
    if (!dom) return 1;
    std::string line;
    for (const auto& c : command)
        line += (line.empty() ? "" : " ") + c;
    LaunchPlan plan;
    plan.argv = {state->bin.client, "--socket-dir=" + ctx.paths.daemon_dir(), "-d", target,
                 user + ":" + line};
    plan.env = current_environment();
    plan.env["VCHAN_DOMAIN"] = "0";
    plan.env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    plan.umask0 = lab_has_other_users(*state);
    CallRecord rec;
    rec.time = now_seconds();
    rec.source = "dom0";
    rec.target = target;
    rec.service = "(run) " + line;
    if (rec.service.size() > 26) rec.service = rec.service.substr(0, 25) + "…";
    rec.via = "qrexec-lab run";
    rec.decision = "dom0";
    rec.detail = "dom0 commands need no policy";
    auto result = run_relayed(plan, true);
    if (!result) return 1;
    rec.duration = now_seconds() - rec.time;
    rec.exit_status = result->exit_status;
    rec.bytes_in = result->bytes_in;
    rec.bytes_out = result->bytes_out;
    append_line(ctx.paths.calls_log(), record_to_json(rec));
    return result->exit_status;
}

int cmd_shell(const Context& ctx, const std::vector<std::string>& args) {
    if (args.empty()) return usage_error("shell needs a DOMAIN", "shell");
    std::vector<std::string> command;
    if (args.size() > 1) {
        if (args[1] != "--" || args.size() < 3)
            return usage_error("write the command after --", "shell");
        command.assign(args.begin() + 2, args.end());
    }
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const Domain* dom = find_domain(*state, args[0], "shell");
    if (!dom) return 1;
    // A qrexec-client-vm that knows this domain's agent socket, first in PATH.
    std::string bin_dir = ctx.paths.domain_run_dir(dom->name) + "/bin";
    make_dir(bin_dir, 0755);
    write_file_atomic(bin_dir + "/qrexec-client-vm",
                      fmt::format("#!/bin/sh\n# qrexec-lab: qrexec-client-vm as domain {}\n"
                                  "exec '{}' --agent-socket='{}' \"$@\"\n",
                                  dom->name, state->bin.client_vm,
                                  ctx.paths.agent_socket(dom->name)),
                      0755);
    auto env = current_environment();
    env["VCHAN_DOMAIN"] = std::to_string(dom->domid);
    env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    env["QREXEC_LAB_DOMAIN"] = dom->name;
    env["PATH"] = bin_dir + ":" + env["PATH"];
    std::string shell = env.count("SHELL") ? env["SHELL"] : "/bin/sh";
    std::vector<std::string> argv;
    if (command.empty()) {
        argv = {shell};
        env["PS1"] = fmt::format("[{}] \\w \\$ ", dom->name);
        fmt::print(stderr,
                   "qrexec-lab: shell as domain '{}' (exit to leave); try: qrexec-client-vm "
                   "TARGET SERVICE\n",
                   dom->name);
    } else {
        argv = {"/bin/sh", "-c", "exec \"$@\"", "sh"};
        argv.insert(argv.end(), command.begin(), command.end());
    }
    LaunchPlan plan =
        plan_in_domain(*state, ctx.paths, *dom, argv, env, {state->bin.client_vm}, command.empty());
    auto result = run_relayed(plan, false);
    return result ? result->exit_status : 1;
}

// ---------------------------------------------------------------------------
// ask (run by the policy engine through state/ask-command)

int cmd_ask(const Context& ctx, const std::vector<std::string>& args) {
    // The question: the policy.Ask payload as JSON on stdin
    // {source, service, argument, targets, default_target}.
    // One line (the asker may keep our stdin open).
    std::string input;
    char buf[4096];
    ssize_t n;
    while (input.size() < 65536 && input.find('\n') == std::string::npos &&
           (n = read(0, buf, sizeof buf)) > 0)
        input.append(buf, static_cast<size_t>(n));
    json q = json::parse(input, nullptr, false);
    if (q.is_discarded() || !q.is_object()) q = json::object();
    // Also accept the question as arguments: SOURCE SERVICE ARGUMENT DEFAULT TARGET...
    if (!q.contains("source") && args.size() >= 2) {
        q["source"] = args[0];
        q["service"] = args[1];
        q["argument"] = args.size() > 2 ? args[2] : "";
        q["default_target"] = args.size() > 3 ? args[3] : "";
        q["targets"] =
            std::vector<std::string>(args.begin() + std::min<size_t>(4, args.size()), args.end());
    }
    std::string source = q.value("source", ""), service = q.value("service", ""),
                argument = q.value("argument", "");
    std::vector<std::string> targets;
    if (q.contains("targets") && q["targets"].is_array())
        for (const auto& t : q["targets"])
            if (t.is_string()) targets.push_back(t.get<std::string>());
    std::string def = q.value("default_target", "");
    std::string full = service + argument;

    std::string answer, how;
    // A waiting `qrexec-lab call` with a terminal for this source and service?
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(ctx.paths.ask_dir(), ec)) {
        if (entry.path().extension() != ".json") continue;
        json r = json::parse(read_file(entry.path().string()).value_or(""), nullptr, false);
        if (r.is_discarded() || r.value("source", "") != source) continue;
        std::string svc = r.value("service", "");
        if (svc != full && svc + "+" != full && svc != service) continue;
        std::string intended = r.value("target", "");
        json question = q;
        if (const char* req = std::getenv("QREXEC_ASK_REQUESTED_TARGET"); req && *req)
            intended = req;
        question["proposed"] =
            std::find(targets.begin(), targets.end(), intended) != targets.end() ? intended : def;
        io::Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string path = r.value("socket", "");
        if (path.size() >= sizeof addr.sun_path) continue;
        std::strcpy(addr.sun_path, path.c_str());
        if (connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) continue;
        io::write_all(s.get(), question.dump() + "\n");
        std::string reply;
        while ((n = read(s.get(), buf, sizeof buf)) > 0)
            reply.append(buf, static_cast<size_t>(n));
        while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r'))
            reply.pop_back();
        if (reply == "deny" || reply.rfind("allow:", 0) == 0) {
            answer = reply;
            how = "the caller's terminal";
            break;
        }
    }
    if (answer.empty()) {
        auto text = read_file(ctx.paths.lab_json());
        auto state = text ? lab_state_from_json(*text, nullptr) : std::nullopt;
        bool allow = state && state->lab.ask == AskFallback::allow;
        how = fmt::format("lab setting ask = \"{}\" (no terminal)", allow ? "allow" : "deny");
        std::string pick = def;
        if (pick.empty() && targets.size() == 1) pick = targets.front();
        answer = allow && !pick.empty() ? "allow:" + pick : "deny";
    }
    json record{{"time", now_seconds()}, {"source", source}, {"service", service},
                {"argument", argument},  {"answer", answer}, {"how", how}};
    append_line(ctx.paths.asks_log(), record.dump());
    fmt::print("{}\n", answer);
    return 0;
}

// ---------------------------------------------------------------------------
// log

std::vector<CallRecord> read_records(const std::string& path, size_t& offset) {
    std::vector<CallRecord> out;
    auto text = read_file(path);
    if (!text || text->size() <= offset) return out;
    size_t pos = offset;
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        if (end == std::string::npos) break; // a line still being written
        if (auto r = record_from_json(text->substr(pos, end - pos))) out.push_back(*r);
        pos = end + 1;
    }
    offset = pos;
    return out;
}

int cmd_log(const Context& ctx, const std::vector<std::string>& args) {
    bool follow = false, as_json = false;
    for (const auto& a : args) {
        if (a == "-f" || a == "--follow")
            follow = true;
        else if (a == "--json")
            as_json = true;
        else
            return usage_error("unknown option " + a, "log");
    }
    size_t offset = 0;
    auto print = [&](std::vector<CallRecord> records) {
        for (const auto& r : merge_records(std::move(records)))
            fmt::print("{}\n", as_json ? record_to_json(r) : format_record(r));
        std::fflush(stdout);
    };
    if (!as_json) fmt::print("{}\n", format_header());
    print(read_records(ctx.paths.calls_log(), offset));
    if (!follow) return 0;
    io::Fd inotify(inotify_init1(IN_CLOEXEC));
    make_dir(ctx.paths.root, 0700);
    inotify_add_watch(inotify.get(), ctx.paths.root.c_str(), IN_MODIFY | IN_CREATE);
    signal(SIGPIPE, SIG_DFL);
    for (;;) {
        io::wait_readable(inotify.get(), -1);
        char buf[4096];
        while (read(inotify.get(), buf, sizeof buf) < 0 && errno == EINTR) {
        }
        print(read_records(ctx.paths.calls_log(), offset));
    }
}

// ---------------------------------------------------------------------------
// demo

int self_run(const Context& ctx, std::vector<std::string> args, const std::string& input = "",
             bool show = true) {
    std::string shown = "qrexec-lab";
    for (const auto& a : args)
        shown += " " + (a.find_first_of(" '\"") == std::string::npos ? a : "'" + a + "'");
    if (show) {
        if (!input.empty())
            fmt::print("\n  $ echo '{}' | {}\n", input, shown);
        else
            fmt::print("\n  $ {}\n", shown);
    }
    std::fflush(stdout);
    io::FdPair in = io::make_pipe();
    std::string self = self_executable();
    args.insert(args.begin(), {"qrexec-lab", "--state-dir=" + ctx.paths.root});
    io::Child child = io::spawn({in.first.get(), -1, -1}, [&]() -> int {
        io::close_fds_from(3);
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(self.c_str(), argv.data());
        return 127;
    });
    in.first.reset();
    if (!input.empty()) io::write_all(in.second.get(), input + "\n");
    in.second.reset();
    int status = child.wait();
    if (show) fmt::print("  => exit status {}\n", status);
    std::fflush(stdout);
    return status;
}

void say(const std::string& text) {
    fmt::print("\n{}\n", text);
    std::fflush(stdout);
}

int cmd_demo(const Context& ctx, const std::vector<std::string>& args) {
    bool keep = !args.empty() && args[0] == "--keep";
    if (auto running = load_running(ctx.paths, true)) {
        fmt::print(stderr,
                   "qrexec-lab demo: a lab is already up in {}\n  hint: 'qrexec-lab down' "
                   "first, or give the demo its own --state-dir\n",
                   ctx.paths.root);
        return 1;
    }
    char tmpl[] = "/tmp/qrexec-lab-demo-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    std::string dir = tmpl;
    if (!write_embedded_example(dir)) {
        fmt::print(stderr, "qrexec-lab demo: cannot write the example lab to {}\n", dir);
        return 1;
    }
    say(fmt::format("== qrexec-lab demo ==\nThe example lab was written to {}.\nIt has three "
                    "domains: 'work' and 'personal' (plain folders) and 'vault'\n(a bubblewrap "
                    "sandbox that sees only its own folder). Its policy is\n{}/policy/"
                    "30-lab.policy. Bringing it up:",
                    dir, dir));
    int up = self_run(ctx, {"up", dir + "/lab.toml"});
    if (up != 0) {
        say("The lab did not come up; see the message above.");
        return up;
    }
    int failures = 0;
    auto step = [&](const std::string& text, std::vector<std::string> cmd, int expect,
                    const std::string& input = "") {
        say(text);
        int got = self_run(ctx, std::move(cmd), input);
        if (got != expect) {
            ++failures;
            fmt::print("  (expected exit status {}, got {})\n", expect, got);
        }
    };
    step("1. ALLOWED: work calls demo.Echo in personal. The policy line\n"
         "   'demo.Echo * @anyvm @anyvm allow' lets any domain echo to any other.",
         {"call", "work", "personal", "demo.Echo"}, 0, "hello from work");
    step("2. ALLOWED with an argument: work copies a file into personal\n"
         "   (demo.FileIn+notes.txt writes it under personal's incoming/work/).",
         {"call", "work", "personal", "demo.FileIn+notes.txt"}, 0, "meeting at 10");
    step("   dom0 can look inside personal with 'run' (like qvm-run --pass-io):",
         {"run", "personal", "cat " + dir + "/personal/incoming/work/notes.txt"}, 0);
    step("3. DENIED: personal may not read the vault. The catch-all rule\n"
         "   '* * @anyvm @anyvm deny' refuses it; the caller gets 126 and\n"
         "   'Request refused', and the vault's service never runs.",
         {"call", "personal", "vault", "demo.VaultGet+password"}, 126);
    say("4. ASKED: work may read the vault only if someone says yes. The rule is\n"
        "   'demo.VaultGet * work vault ask default_target=vault'. On a terminal\n"
        "   you are asked; without one the lab's setting (ask = \"allow\" in\n"
        "   this lab.toml) answers.");
    {
        int got = self_run(ctx, {"call", "work", "vault", "demo.VaultGet+password"});
        say(got == 0 ? "   The vault answered: the ask was allowed."
                     : "   The ask was denied (126): the vault stayed shut.");
    }
    step("5. FAILING calls. A service that fails passes its exit status through:",
         {"call", "work", "personal", "demo.Fail"}, 3);
    step("   A service the target does not have: allowed by policy, but 127:",
         {"call", "work", "personal", "demo.Missing"}, 127);
    step("   A target that does not exist becomes @default in the policy -> denied:",
         {"call", "work", "nosuchdomain", "demo.Echo"}, 126);
    step("6. ISOLATION: vault runs in a sandbox. From inside it, work's folder\n"
         "   does not exist, while the vault's own secrets do:",
         {"shell", "vault", "--", "/bin/sh", "-c",
          "ls " + dir + "/work 2>&1 | head -1; ls " + dir + "/vault"},
         0);
    say("7. THE LOG: one line per call, with the policy line that decided it.");
    self_run(ctx, {"log"}, "", true);
    if (keep) {
        say(fmt::format("The lab stays up (state dir {}). Stop it with: qrexec-lab "
                        "--state-dir={} down",
                        ctx.paths.root, ctx.paths.root));
        return failures ? 1 : 0;
    }
    say("8. Taking the lab down: every process stops, every socket goes.");
    self_run(ctx, {"down"});
    std::error_code ec;
    fs::remove_all(dir, ec);
    say(failures ? fmt::format("demo finished with {} unexpected result(s).", failures)
                 : "demo finished: every call behaved as explained.");
    return failures ? 1 : 0;
}

// After positional arguments, call/run/shell pass --help on to the program they run.
bool help_allowed(const std::string& command, const std::vector<std::string>& args) {
    if (command.empty() || args.empty()) return true;
    return command != "call" && command != "run" && command != "shell";
}

} // namespace

int run_lab_command(const std::vector<std::string>& raw) {
    Context ctx;
    std::string state_dir;
    std::vector<std::string> args;
    std::string command;
    bool help = false;
    // Global options before the command; --state-dir is also accepted after it
    // (up to a "--", which belongs to the command).
    bool dashes = false;
    for (size_t i = 0; i < raw.size(); ++i) {
        const std::string& a = raw[i];
        if (!dashes && a.rfind("--state-dir=", 0) == 0) {
            state_dir = a.substr(12);
        } else if (!dashes && a == "--state-dir") {
            if (i + 1 >= raw.size()) return usage_error("--state-dir needs a value");
            state_dir = raw[++i];
        } else if (!dashes && (a == "--help" || a == "-h") && help_allowed(command, args)) {
            help = true;
        } else if (command.empty()) {
            if (!a.empty() && a[0] == '-') return usage_error("unknown option " + a);
            command = a;
        } else {
            if (a == "--") dashes = true;
            args.push_back(a);
        }
    }
    if (command == "help") {
        if (args.empty()) return fmt::print("{}", kUsage), 0;
        command = args[0];
        help = true;
    }
    if (command == "trace") return run_trace_command(args, help); // lab/trace.cpp
    if (command.empty()) {
        if (help) return fmt::print("{}", kUsage), 0;
        fmt::print(stderr, "{}", kUsage);
        return 2;
    }
    if (help) {
        auto it = command_help().find(command);
        if (it == command_help().end()) return usage_error("unknown command " + command);
        fmt::print("{}", it->second);
        return 0;
    }
    ctx.paths.root = state_dir.empty() ? default_state_dir() : state_dir;
    if (ctx.paths.root.size() > 1 && ctx.paths.root.back() == '/') ctx.paths.root.pop_back();
    ctx.paths.root = fs::absolute(ctx.paths.root).lexically_normal().string();
    using Handler = int (*)(const Context&, const std::vector<std::string>&);
    static const std::map<std::string, Handler> handlers{
        {"up", cmd_up},         {"check", cmd_check},
        {"status", cmd_status}, {"down", cmd_down},
        {"call", cmd_call},     {"run", cmd_run},
        {"shell", cmd_shell},   {"log", cmd_log},
        {"demo", cmd_demo},     {"supervise", cmd_supervise},
        {"ask", cmd_ask}};
    auto it = handlers.find(command);
    if (it == handlers.end()) return usage_error("unknown command '" + command + "'");
    return it->second(ctx, args);
}

} // namespace qrexec::lab
