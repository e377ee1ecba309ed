#include "lab/launch.h"

#include "io/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

bool under(const std::string& path, const std::string& dir) {
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           path[dir.size()] == '/');
}

// The home folder to create in the domain's sandbox, or "" if none is needed.
std::string home_in_sandbox(const Domain& domain) {
    struct passwd* pw = domain.user.empty() ? getpwuid(getuid()) : getpwnam(domain.user.c_str());
    if (!pw || !pw->pw_dir || pw->pw_dir[0] != '/') return {};
    std::string home = fs::path(pw->pw_dir).lexically_normal().string();
    for (const char* system : {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                               "/etc", "/proc", "/dev", "/tmp", "/var/tmp"})
        if (under(home, system)) return {};
    if (home == "/" || home == domain.folder) return {};
    return home;
}

} // namespace

std::vector<std::string> sandbox_argv(const Domain& domain, const StatePaths& paths,
                                      const std::string& bwrap,
                                      const std::vector<std::string>& ro_files,
                                      const std::vector<std::string>& inner, bool new_session) {
    std::vector<std::string> a{bwrap,           "--die-with-parent", "--unshare-pid",
                               "--unshare-ipc", "--unshare-uts",     "--hostname",
                               domain.name};
    if (new_session) a.push_back("--new-session");
    // System folders: the host's, read-only (usr-merged systems have symlinks).
    for (const char* dir :
         {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}) {
        std::error_code ec;
        auto status = fs::symlink_status(dir, ec);
        if (ec || !fs::exists(status)) continue;
        if (fs::is_symlink(status)) {
            auto target = fs::read_symlink(dir, ec);
            if (!ec) a.insert(a.end(), {"--symlink", target.string(), dir});
        } else {
            a.insert(a.end(), {"--ro-bind", dir, dir});
        }
    }
    a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
                       "--tmpfs", "/var/tmp"});
    // The home of the user services run as: the agent enters it before a service
    // starts (and warns into the caller's stderr when it is missing). A private,
    // empty one; system folders that are homes (e.g. /usr/games) already exist.
    std::string home = home_in_sandbox(domain);
    if (!home.empty()) a.insert(a.end(), {"--tmpfs", home});
    // Files the lab runs inside (binaries), then the domain's own places.
    for (const auto& f : ro_files)
        a.insert(a.end(), {"--ro-bind", f, f});
    a.insert(a.end(), {"--bind", domain.folder, domain.folder});
    a.insert(a.end(), {"--bind", paths.vchan_dir(), paths.vchan_dir()});
    a.insert(a.end(),
             {"--bind", paths.domain_run_dir(domain.name), paths.domain_run_dir(domain.name)});
    a.insert(a.end(), {"--chdir", domain.folder, "--setenv", "HOME", domain.folder, "--"});
    a.insert(a.end(), inner.begin(), inner.end());
    return a;
}

std::map<std::string, std::string> current_environment() {
    std::map<std::string, std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return env;
}

bool lab_has_other_users(const LabState& state) {
    for (const auto& d : state.lab.domains)
        if (!d.user.empty() && d.user != state.invoking_user) return true;
    return false;
}

LaunchPlan plan_in_domain(const LabState& state, const StatePaths& paths, const Domain& domain,
                          std::vector<std::string> argv, std::map<std::string, std::string> env,
                          const std::vector<std::string>& ro_files, bool interactive) {
    LaunchPlan plan;
    plan.env = std::move(env);
    plan.cwd = domain.folder;
    plan.umask0 = lab_has_other_users(state);
    if (!domain.user.empty() && domain.user != state.invoking_user) {
        plan.user = domain.user;
        if (struct passwd* pw = getpwnam(domain.user.c_str())) {
            plan.env["USER"] = pw->pw_name;
            plan.env["LOGNAME"] = pw->pw_name;
        }
    }
    if (domain.isolation == Isolation::sandbox) {
        plan.argv = sandbox_argv(domain, paths, state.bin.bwrap, ro_files, argv, !interactive);
        plan.env["HOME"] = domain.folder;
    } else {
        plan.argv = std::move(argv);
    }
    return plan;
}

void exec_plan(const LaunchPlan& plan) {
    if (plan.umask0) umask(0);
    if (!plan.user.empty()) {
        struct passwd* pw = getpwnam(plan.user.c_str());
        if (!pw) {
            fmt::print(stderr, "qrexec-lab: no such user '{}'\n", plan.user);
            return;
        }
        auto groups = io::groups_of_user(pw->pw_name, pw->pw_gid);
        if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
            setuid(pw->pw_uid) != 0) {
            fmt::print(stderr, "qrexec-lab: cannot become user '{}': {}\n", plan.user,
                       std::strerror(errno));
            return;
        }
        auto why = groups ? io::verify_dropped_privileges(pw->pw_uid, pw->pw_gid, *groups)
                          : std::optional<std::string>("cannot list the user's groups");
        if (why) {
            fmt::print(stderr, "qrexec-lab: becoming user '{}' incomplete: {}\n", plan.user, *why);
            return;
        }
    }
    if (plan.parent_death_signal) {
        pid_t parent = getppid();
        prctl(PR_SET_PDEATHSIG, plan.parent_death_signal);
        if (getppid() != parent || parent == 1) return;
    }
    if (!plan.cwd.empty() && chdir(plan.cwd.c_str()) != 0) {
        fmt::print(stderr, "qrexec-lab: cannot enter {}: {}\n", plan.cwd, std::strerror(errno));
        return;
    }
    std::vector<std::string> envs;
    for (const auto& [k, v] : plan.env)
        envs.push_back(k + "=" + v);
    std::vector<char*> argv, envp;
    for (const auto& a : plan.argv)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : envs)
        envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    fmt::print(stderr, "qrexec-lab: cannot run {}: {}\n", plan.argv[0], std::strerror(errno));
}

} // namespace qrexec::lab
