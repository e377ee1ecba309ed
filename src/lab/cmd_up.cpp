// qrexec-lab up / check / supervise: validate a lab file and start it in the background.
#include "lab/cli.h"

#include "io/fd.h"
#include "io/process.h"
#include "lab/domain_user.h"
#include "lab/launch.h"
#include "lab/multihost.h"
#include "lab/policy_view.h"
#include "lab/supervisor.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

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

bool socket_paths_fit(const StatePaths& paths, std::string& error) {
    // Longest names: qrexec.uuid:<36> in the daemon dir, vchan.N.N.NNN.sock.
    size_t longest = std::max(paths.daemon_dir().size() + 13 + 36, paths.vchan_dir().size() + 26);
    if (longest < sizeof(sockaddr_un::sun_path)) return true;
    error = fmt::format("the state dir {} is too deep for UNIX socket names ({} > {} bytes)\n"
                        "  hint: use a shorter --state-dir",
                        paths.root, longest, sizeof(sockaddr_un::sun_path) - 1);
    return false;
}

// Programs that run as a domain's user but that user cannot run where they are
// (a build in a 0700 home): run from the state dir instead, which every
// domain's user reaches. A hard link when the file system allows, else a copy.
bool stage_programs(const StatePaths& paths, const std::vector<std::string>& unrunnable,
                    Binaries& bin) {
    if (unrunnable.empty()) return true;
    std::string dir = paths.bin_dir();
    if (!make_dir(dir, 0755)) {
        fmt::print(stderr, "qrexec-lab: cannot create {}: {}\n", dir, std::strerror(errno));
        return false;
    }
    for (std::string* program : {&bin.agent, &bin.client_vm}) {
        if (std::find(unrunnable.begin(), unrunnable.end(), *program) == unrunnable.end()) continue;
        std::string staged = dir + "/" + fs::path(*program).filename().string();
        std::error_code ec;
        fs::remove(staged, ec);
        // A link shares the mode: only when the program is runnable by others already.
        struct stat st {};
        bool linkable = stat(program->c_str(), &st) == 0 && (st.st_mode & 0111) == 0111;
        if (linkable) fs::create_hard_link(*program, staged, ec);
        if (!linkable || ec) fs::copy_file(*program, staged, ec);
        if (ec || chmod(staged.c_str(), 0755) != 0) {
            fmt::print(stderr, "qrexec-lab: cannot copy {} to {}: {}\n", *program, staged,
                       ec ? ec.message() : std::strerror(errno));
            return false;
        }
        *program = staged;
    }
    return true;
}

// Who runs each domain, and whether they can (docs/LAB.md "Users"): prints the
// warnings; returns the exit status when the lab must not start. `programs` run
// as the domains' users; those some user cannot run land in `unrunnable`.
std::optional<int> settle_domain_users(Lab& lab, const std::string& state_dir,
                                       const std::vector<std::string>& programs,
                                       std::vector<std::string>& unrunnable) {
    std::string me = current_user_name();
    if (auto errors = assign_domain_users(lab, getuid(), me); !errors.empty())
        return print_diagnostics(errors);
    auto access = check_domain_access(lab, me, state_dir, programs);
    if (!access.errors.empty()) return print_diagnostics(access.errors);
    for (const auto& warning : access.warnings)
        fmt::print(stderr, "qrexec-lab: warning: {}\n", warning);
    unrunnable = std::move(access.unrunnable);
    return std::nullopt;
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
    std::vector<std::string> unrunnable; // before anything starts
    if (auto refused =
            settle_domain_users(state.lab, paths.root, {bin->agent, bin->client_vm}, unrunnable))
        return *refused;
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
    if (!stage_programs(paths, unrunnable, state.bin)) return 1;
    for (const auto& d : state.lab.domains) {
        std::string dir = paths.domain_run_dir(d.name);
        make_dir(dir, 0755);
        if (!d.user.empty() && d.user != state.invoking_user)
            if (struct passwd* pw = getpwnam(d.user.c_str()))
                if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0)
                    fmt::print(stderr, "qrexec-lab: warning: cannot chown {}\n", dir);
    }
    write_file_atomic(paths.lab_json(), lab_state_to_json(state));
    write_file_atomic(paths.system_info(), system_info_json(state.lab));
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

} // namespace

int cmd_check(const Context& ctx, const Args& args) {
    std::string file = lab_file_argument(args);
    if (is_multi_host_file(file)) {
        auto result = load_air_lab(file, RealHost());
        if (!result.lab) return print_diagnostics(result.errors);
        fmt::print("{}: ok ({} hosts)\n", result.lab->file, result.lab->hosts.size());
        return 0;
    }
    auto result = load_and_check(file);
    if (!result.lab) return print_diagnostics(result.errors);
    // The users' access too, as `up` checks it (programs aside: `up` copies those).
    std::vector<std::string> unrunnable;
    if (auto refused = settle_domain_users(*result.lab, ctx.paths.root, {}, unrunnable))
        return *refused;
    fmt::print("{}: ok ({} domains)\n", result.lab->file, result.lab->domains.size());
    return 0;
}

int cmd_up(const Context& ctx, const Args& args) {
    std::string file, air_file;
    for (const auto& a : args) {
        if (a.rfind("--air=", 0) == 0)
            air_file = a.substr(6); // one host of a multi-host lab (multihost.cpp)
        else if (file.empty())
            file = a;
        else
            return usage_error("up takes one lab file", "up");
    }
    if (file.empty()) file = "lab.toml";
    if (air_file.empty() && is_multi_host_file(file)) {
        auto result = load_air_lab(file, RealHost());
        if (!result.lab) return print_diagnostics(result.errors);
        return air_up(ctx, *result.lab);
    }
    auto result = load_and_check(file);
    if (!result.lab) return print_diagnostics(result.errors);
    if (!air_file.empty()) {
        std::string error;
        auto text = read_file(air_file);
        auto air = text ? air_side_from_json(*text, &error) : std::nullopt;
        if (!air) {
            fmt::print(stderr, "qrexec-lab: cannot read {}: {}\n", air_file, error);
            return 1;
        }
        result.lab->air = *air;
    }
    return start_lab(ctx, *result.lab);
}

int cmd_supervise(const Context& ctx, const Args& args) {
    int ready_fd = -1;
    for (const auto& a : args)
        if (a.rfind("--ready-fd=", 0) == 0) ready_fd = std::stoi(a.substr(11));
    if (ready_fd >= 0) io::set_cloexec(ready_fd);
    return run_supervisor(ctx.paths, ready_fd);
}

} // namespace qrexec::lab
