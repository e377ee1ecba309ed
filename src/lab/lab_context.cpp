// Helpers over a running lab's state dir, shared by the subcommands.
#include "lab/cli.h"

#include "lab/supervisor.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

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

std::optional<LabState> load_running(const StatePaths& paths, bool quiet) {
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

namespace {

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

} // namespace

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

} // namespace qrexec::lab
