#include "lab/state.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace qrexec::lab {
namespace fs = std::filesystem;
using nlohmann::json;

std::string default_state_dir() {
    if (const char* env = std::getenv("QREXEC_LAB_STATE_DIR"); env && *env) return env;
    // Root's runtime dir (/run/user/0) is 0700, and a root lab's domains run as
    // other users who must reach its sockets: /run is root's and traversable.
    if (getuid() == 0) return "/run/qrexec-lab";
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        return std::string(xdg) + "/qrexec-lab";
    return fmt::format("/tmp/qrexec-lab-{}", getuid());
}

std::string self_executable() {
    std::error_code ec;
    auto p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : p.string();
}

namespace {
bool executable(const fs::path& p) {
    struct stat st {};
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}
} // namespace

std::string find_binary(const std::string& name) {
    std::vector<fs::path> candidates;
    if (const char* dir = std::getenv("QREXEC_LAB_BIN_DIR"); dir && *dir) {
        candidates.push_back(fs::path(dir) / name);
        candidates.push_back(fs::path(dir) / "apps" / name / name);
    }
    fs::path self = self_executable();
    if (!self.empty()) {
        fs::path dir = self.parent_path();
        candidates.push_back(dir / name);
        candidates.push_back(dir.parent_path() / name / name);
    }
    for (const auto& c : candidates)
        if (executable(c)) return fs::absolute(c).lexically_normal().string();
    return {};
}

std::string find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string list = path ? path : "/usr/local/bin:/usr/bin:/bin";
    std::stringstream ss(list);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        if (dir.empty()) continue;
        fs::path p = fs::path(dir) / name;
        if (executable(p)) return p.string();
    }
    return {};
}

namespace {

json domain_to_json(const Domain& d) {
    return json{{"name", d.name},         {"type", d.type},
                {"tags", d.tags},         {"folder", d.folder},
                {"services", d.services}, {"rpc_config", d.rpc_config},
                {"user", d.user},         {"isolation", isolation_name(d.isolation)},
                {"domid", d.domid},       {"uuid", d.uuid},
                {"line", d.line}};
}

Domain domain_from_json(const json& j) {
    Domain d;
    d.name = j.at("name").get<std::string>();
    d.type = j.at("type").get<std::string>();
    d.tags = j.at("tags").get<std::vector<std::string>>();
    d.folder = j.at("folder").get<std::string>();
    d.services = j.at("services").get<std::string>();
    d.rpc_config = j.at("rpc_config").get<std::string>();
    d.user = j.at("user").get<std::string>();
    d.isolation =
        j.at("isolation").get<std::string>() == "sandbox" ? Isolation::sandbox : Isolation::none;
    d.domid = j.at("domid").get<int>();
    d.uuid = j.at("uuid").get<std::string>();
    d.line = j.value("line", 0);
    return d;
}

json air_to_json(const AirSide& a) {
    json remotes = json::array();
    for (const auto& r : a.remotes)
        remotes.push_back(json{{"name", r.name},
                               {"relay", r.relay},
                               {"transport_rpc", r.transport_rpc},
                               {"tags", r.tags}});
    return json{{"remotes", remotes},
                {"relay", a.relay},
                {"ssh_dir", a.ssh_dir},
                {"services_dir", a.services_dir},
                {"sshd", a.sshd},
                {"sshd_config", a.sshd_config},
                {"sshd_pid_file", a.sshd_pid_file}};
}

AirSide air_from_json(const json& j) {
    AirSide a;
    for (const auto& r : j.at("remotes"))
        a.remotes.push_back(RemoteDomain{r.at("name").get<std::string>(),
                                         r.at("relay").get<std::string>(),
                                         r.at("transport_rpc").get<std::string>(),
                                         r.at("tags").get<std::vector<std::string>>()});
    a.relay = j.at("relay").get<std::string>();
    a.ssh_dir = j.at("ssh_dir").get<std::string>();
    a.services_dir = j.at("services_dir").get<std::string>();
    a.sshd = j.at("sshd").get<std::string>();
    a.sshd_config = j.at("sshd_config").get<std::string>();
    a.sshd_pid_file = j.at("sshd_pid_file").get<std::string>();
    return a;
}

} // namespace

std::string air_side_to_json(const AirSide& air) {
    return air_to_json(air).dump(2) + "\n";
}

std::optional<AirSide> air_side_from_json(const std::string& text, std::string* error) {
    try {
        return air_from_json(json::parse(text));
    } catch (const std::exception& e) {
        if (error) *error = e.what();
        return std::nullopt;
    }
}

std::string lab_state_to_json(const LabState& s) {
    json domains = json::array();
    for (const auto& d : s.lab.domains)
        domains.push_back(domain_to_json(d));
    json j{{"lab",
            {{"file", s.lab.file},
             {"name", s.lab.name},
             {"policy", s.lab.policy},
             {"ask", s.lab.ask == AskFallback::allow ? "allow" : "deny"},
             {"dom0", {{"services", s.lab.dom0.services}, {"rpc_config", s.lab.dom0.rpc_config}}},
             {"domains", domains},
             {"air", air_to_json(s.lab.air)}}},
           {"bin",
            {{"agent", s.bin.agent},
             {"daemon", s.bin.daemon},
             {"client", s.bin.client},
             {"client_vm", s.bin.client_vm},
             {"policy_daemon", s.bin.policy_daemon},
             {"policy_exec", s.bin.policy_exec},
             {"policy", s.bin.policy},
             {"bwrap", s.bin.bwrap},
             {"lab", s.bin.lab}}},
           {"invoking_user", s.invoking_user},
           {"invoking_uid", s.invoking_uid}};
    return j.dump(2) + "\n";
}

std::optional<LabState> lab_state_from_json(const std::string& text, std::string* error) {
    try {
        json j = json::parse(text);
        LabState s;
        const json& l = j.at("lab");
        s.lab.file = l.at("file").get<std::string>();
        s.lab.name = l.at("name").get<std::string>();
        s.lab.policy = l.at("policy").get<std::string>();
        s.lab.ask =
            l.at("ask").get<std::string>() == "allow" ? AskFallback::allow : AskFallback::deny;
        s.lab.dom0.services = l.at("dom0").at("services").get<std::string>();
        s.lab.dom0.rpc_config = l.at("dom0").at("rpc_config").get<std::string>();
        for (const auto& d : l.at("domains"))
            s.lab.domains.push_back(domain_from_json(d));
        if (l.contains("air")) s.lab.air = air_from_json(l.at("air"));
        const json& b = j.at("bin");
        s.bin.agent = b.at("agent").get<std::string>();
        s.bin.daemon = b.at("daemon").get<std::string>();
        s.bin.client = b.at("client").get<std::string>();
        s.bin.client_vm = b.at("client_vm").get<std::string>();
        s.bin.policy_daemon = b.at("policy_daemon").get<std::string>();
        s.bin.policy_exec = b.at("policy_exec").get<std::string>();
        s.bin.policy = b.at("policy").get<std::string>();
        s.bin.bwrap = b.at("bwrap").get<std::string>();
        s.bin.lab = b.at("lab").get<std::string>();
        s.invoking_user = j.at("invoking_user").get<std::string>();
        s.invoking_uid = j.at("invoking_uid").get<uid_t>();
        return s;
    } catch (const std::exception& e) {
        if (error) *error = e.what();
        return std::nullopt;
    }
}

std::string system_info_json(const Lab& lab) {
    auto entry = [](const std::string& uuid, const std::string& type,
                    const std::vector<std::string>& tags) {
        return json{{"tags", tags},
                    {"type", type},
                    {"uuid", uuid},
                    {"default_dispvm", nullptr},
                    {"template_for_dispvms", false},
                    {"power_state", "Running"},
                    {"icon", ""},
                    {"guivm", nullptr},
                    {"relayvm", nullptr},
                    {"transport_rpc", nullptr}};
    };
    json domains = json::object();
    domains["dom0"] = entry(domain_uuid("dom0"), "AdminVM", {});
    for (const auto& d : lab.domains)
        domains[d.name] = entry(d.uuid, d.type, d.tags);
    for (const auto& r : lab.air.remotes) {
        json remote = entry(domain_uuid(r.name), "RemoteVM", r.tags);
        remote["relayvm"] = r.relay;
        remote["transport_rpc"] = r.transport_rpc;
        domains[r.name] = remote;
    }
    return json{{"domains", domains}}.dump(2) + "\n";
}

bool ProcessId::alive() const {
    if (pid <= 0) return false;
    auto now = process_id_of(pid);
    return now && now->start_time == start_time;
}

std::optional<ProcessId> process_id_of(pid_t pid) {
    auto stat = read_file(fmt::format("/proc/{}/stat", pid));
    if (!stat) return std::nullopt;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    auto close = stat->rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream rest(stat->substr(close + 2));
    std::string field;
    char state = 0;
    rest >> state;
    if (state == 'Z' || state == 'X') return std::nullopt;
    // field 3 was state; start time is field 22 -> 19 more fields after state.
    for (int i = 4; i < 22 && rest >> field; ++i) {
    }
    unsigned long long start = 0;
    if (!(rest >> start)) return std::nullopt;
    return ProcessId{pid, start};
}

std::string process_id_to_text(const ProcessId& id) {
    return fmt::format("{} {}\n", id.pid, id.start_time);
}

std::optional<ProcessId> process_id_from_text(const std::string& text) {
    std::istringstream in(text);
    ProcessId id;
    if (!(in >> id.pid >> id.start_time) || id.pid <= 0) return std::nullopt;
    return id;
}

std::string components_to_json(const std::vector<Component>& components, bool ready) {
    json list = json::array();
    for (const auto& c : components)
        list.push_back({{"name", c.name},
                        {"domain", c.domain},
                        {"role", c.role},
                        {"pid", c.process.pid},
                        {"start_time", c.process.start_time},
                        {"state", c.state},
                        {"detail", c.detail},
                        {"log", c.log}});
    return json{{"ready", ready}, {"components", list}}.dump(2) + "\n";
}

std::vector<Component> components_from_json(const std::string& text, bool* ready) {
    std::vector<Component> out;
    try {
        json j = json::parse(text);
        if (ready) *ready = j.value("ready", false);
        for (const auto& c : j.at("components")) {
            Component comp;
            comp.name = c.at("name").get<std::string>();
            comp.domain = c.at("domain").get<std::string>();
            comp.role = c.at("role").get<std::string>();
            comp.process.pid = c.at("pid").get<pid_t>();
            comp.process.start_time = c.at("start_time").get<unsigned long long>();
            comp.state = c.at("state").get<std::string>();
            comp.detail = c.at("detail").get<std::string>();
            comp.log = c.at("log").get<std::string>();
            out.push_back(std::move(comp));
        }
    } catch (const std::exception&) {
        out.clear();
    }
    return out;
}

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool write_file_atomic(const std::string& path, const std::string& text, mode_t mode) {
    std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ok = fchmod(fd, mode) == 0 && ok;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp.c_str(), path.c_str()) == 0) return true;
    unlink(tmp.c_str());
    return false;
}

bool append_line(const std::string& path, const std::string& line) {
    // O_APPEND with one write per line keeps concurrent writers' lines whole.
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    std::string text = line + "\n";
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
}

std::string describe_wait_status(int raw) {
    if (WIFEXITED(raw)) return fmt::format("exited with status {}", WEXITSTATUS(raw));
    if (WIFSIGNALED(raw))
        return fmt::format("killed by signal {} ({})", WTERMSIG(raw), strsignal(WTERMSIG(raw)));
    return "ended";
}

} // namespace qrexec::lab
