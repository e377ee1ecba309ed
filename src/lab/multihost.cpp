#include "lab/multihost.h"

#include "io/fd.h"
#include "io/process.h"
#include "lab/calllog.h"
#include "lab/policy_view.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

namespace qrexec::lab {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kTransport = "qubesair.SSHProxy";
constexpr size_t kMaxHosts = 8;

std::string quote_sh(const std::string& s) {
    std::string out = "'";
    for (char c : s)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

} // namespace

std::vector<const Domain*> AirHost::exported() const {
    std::vector<const Domain*> out;
    for (const auto& d : lab.domains)
        if (d.name != relay) out.push_back(&d);
    return out;
}

bool is_multi_host_text(std::string_view text) {
    try {
        toml::table root = toml::parse(text);
        return root.contains("host");
    } catch (const toml::parse_error&) {
        return false;
    }
}

bool is_multi_host_file(const std::string& path) {
    auto text = read_file(path);
    return text && is_multi_host_text(*text);
}

AirParseResult load_air_lab(const std::string& path, const Host& probe) {
    AirParseResult out;
    std::string file = fs::absolute(path).lexically_normal().string();
    auto fail = [&](int line, std::string message, std::string hint) {
        out.errors.push_back({file, line, std::move(message), std::move(hint)});
        return out;
    };
    auto text = read_file(file);
    if (!text) return fail(0, "cannot read the lab file", "check the path");
    toml::table root;
    try {
        root = toml::parse(*text, file);
    } catch (const toml::parse_error& e) {
        return fail(static_cast<int>(e.source().begin.line), std::string(e.description()),
                    "fix the TOML syntax at that line");
    }
    AirLab lab;
    lab.file = file;
    lab.name = fs::path(file).stem().string();
    for (auto&& [key, node] : root) {
        if (key.str() == "lab") {
            const toml::table* t = node.as_table();
            if (!t) return fail(0, "[lab] must be a table", "write [lab] name = \"...\"");
            if (auto name = (*t)["name"].value<std::string>()) lab.name = *name;
        } else if (key.str() != "host") {
            return fail(static_cast<int>(node.source().begin.line),
                        fmt::format("unknown key '{}' in a multi-host lab", key.str()),
                        "a multi-host lab has only [lab] and [[host]] tables");
        }
    }
    const toml::array* hosts = root["host"].as_array();
    if (!hosts || hosts->size() < 2 || hosts->size() > kMaxHosts)
        return fail(0, fmt::format("a multi-host lab needs 2 to {} [[host]] tables", kMaxHosts),
                    "add [[host]] name = ..., lab = ..., relay = ...");
    std::string base = fs::path(file).parent_path().string();
    std::set<std::string> host_names;
    std::map<std::string, std::string> domain_host; // every domain name, across hosts
    for (const auto& element : *hosts) {
        int line = static_cast<int>(element.source().begin.line);
        const toml::table* t = element.as_table();
        if (!t) return fail(line, "[[host]] must be a table", "");
        for (auto&& [key, node] : *t)
            if (key.str() != "name" && key.str() != "lab" && key.str() != "relay")
                return fail(line, fmt::format("unknown key '{}' in [[host]]", key.str()),
                            "allowed keys: name, lab, relay");
        auto name = (*t)["name"].value<std::string>();
        auto lab_file = (*t)["lab"].value<std::string>();
        auto relay = (*t)["relay"].value<std::string>();
        if (!name || !lab_file || !relay)
            return fail(line, "[[host]] needs name, lab and relay (strings)",
                        "e.g. name = \"alpha\", lab = \"alpha/lab.toml\", relay = \"relay-a\"");
        if (auto problem = check_domain_name(*name); problem || name->size() > 12)
            return fail(line, fmt::format("bad host name '{}'", *name),
                        "a letter, then letters, digits, '-', '_'; at most 12 characters");
        if (!host_names.insert(*name).second)
            return fail(line, fmt::format("host '{}' is named twice", *name), "");
        fs::path host_file =
            fs::path(*lab_file).is_absolute() ? fs::path(*lab_file) : fs::path(base) / *lab_file;
        auto loaded = load_lab(host_file.lexically_normal().string(), probe);
        if (loaded.lab)
            if (auto problem = check_policy(*loaded.lab)) {
                loaded.errors.push_back(*problem);
                loaded.lab.reset();
            }
        if (!loaded.lab) {
            out.errors.insert(out.errors.end(), loaded.errors.begin(), loaded.errors.end());
            return out;
        }
        if (!loaded.lab->find(*relay))
            return fail(line,
                        fmt::format("host '{}' has no domain '{}' for its relay", *name, *relay),
                        "name one of the host's domains as relay");
        for (const auto& d : loaded.lab->domains) {
            auto [it, fresh] = domain_host.emplace(d.name, *name);
            if (!fresh)
                return fail(
                    line,
                    fmt::format("domain '{}' is on hosts '{}' and '{}'", d.name, it->second, *name),
                    "domain names must be unique across hosts: each is one qube");
        }
        lab.hosts.push_back(AirHost{*name, *relay, std::move(*loaded.lab)});
    }
    out.lab = std::move(lab);
    return out;
}

// ---------------------------------------------------------------------------
// The running record.

std::string air_state_path(const StatePaths& paths) {
    return paths.root + "/hosts.json";
}

std::string air_state_to_json(const AirState& s) {
    json hosts = json::array();
    for (const auto& h : s.hosts)
        hosts.push_back(json{{"name", h.name},
                             {"state_dir", h.state_dir},
                             {"lab", h.lab_file},
                             {"netns", h.netns},
                             {"domains", h.domains}});
    return json{{"name", s.name}, {"file", s.file}, {"hosts", hosts}}.dump(2) + "\n";
}

std::optional<AirState> air_state_from_json(const std::string& text) {
    try {
        json j = json::parse(text);
        AirState s;
        s.name = j.at("name").get<std::string>();
        s.file = j.at("file").get<std::string>();
        for (const auto& h : j.at("hosts"))
            s.hosts.push_back(AirHostState{
                h.at("name").get<std::string>(), h.at("state_dir").get<std::string>(),
                h.at("lab").get<std::string>(), h.at("netns").get<unsigned long long>(),
                h.at("domains").get<std::vector<std::string>>()});
        return s;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::optional<AirState> load_air_state(const StatePaths& paths) {
    auto text = read_file(air_state_path(paths));
    return text ? air_state_from_json(*text) : std::nullopt;
}

namespace {

// ---------------------------------------------------------------------------
// Processes.

// Runs argv (optionally inside the network namespace of pid `netns_of`), waits.
int run_program(const std::vector<std::string>& argv, pid_t netns_of = 0, bool quiet = false) {
    io::Fd null(open("/dev/null", O_RDWR | O_CLOEXEC));
    io::Child child =
        io::spawn({null.get(), quiet ? null.get() : -1, quiet ? null.get() : -1}, [&]() -> int {
            if (netns_of > 0) {
                std::string ns = fmt::format("/proc/{}/ns/net", netns_of);
                int fd = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
                if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) return 126;
            }
            io::close_fds_from(3);
            std::vector<char*> args;
            for (const auto& a : argv)
                args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            execv(args[0], args.data());
            return 127;
        });
    return child.wait();
}

// `qrexec-lab up` for one host, in a network namespace of its own: the host's
// supervisor (detached by `up`) keeps the namespace alive.
// `qrexec-lab up` for one host, in a network namespace of its own: the host's
// supervisor (detached by `up`) keeps the namespace alive. Its output goes to
// `output` (hosts come up in parallel).
io::Child up_host_in_new_netns(const std::string& self, const std::string& state_dir,
                               const std::string& lab_file, const std::string& air_file,
                               int output) {
    io::Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    return io::spawn({null.get(), output, output}, [&]() -> int {
        if (unshare(CLONE_NEWNET) != 0) {
            perror("qrexec-lab: unshare(CLONE_NEWNET)");
            return 1;
        }
        io::close_fds_from(3);
        execl(self.c_str(), "qrexec-lab", ("--state-dir=" + state_dir).c_str(), "up",
              lab_file.c_str(), ("--air=" + air_file).c_str(), static_cast<char*>(nullptr));
        return 127;
    });
}

unsigned long long netns_inode(pid_t pid) {
    struct stat st {};
    if (stat(fmt::format("/proc/{}/ns/net", pid).c_str(), &st) != 0) return 0;
    return st.st_ino;
}

// Every process in the network namespace `inode` (sshd sessions, ssh masters,
// whatever a host left behind). The caller's own namespace is never this one.
std::vector<pid_t> processes_in_netns(unsigned long long inode) {
    std::vector<pid_t> out;
    std::string want = fmt::format("net:[{}]", inode);
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
        std::string name = entry.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::error_code link_error;
        auto link = fs::read_symlink(entry.path() / "ns/net", link_error);
        if (!link_error && link.string() == want) out.push_back(std::stoi(name));
    }
    return out;
}

void kill_netns(unsigned long long inode) {
    if (inode == 0 || inode == netns_inode(getpid())) return;
    for (int round = 0; round < 20; ++round) {
        auto pids = processes_in_netns(inode);
        if (pids.empty()) return;
        for (pid_t p : pids)
            kill(p, SIGKILL);
        // Killed processes leave /proc once reaped by their parents; look again.
        for (pid_t p : pids) {
            int fd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
            if (fd >= 0) {
                io::wait_readable(fd, 1000);
                close(fd);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Setting up one host's OpenSSH side.

struct Tools {
    std::string self, sshd, keygen, ip, receiver, proxy, client_vm;
};

std::string first_executable(std::initializer_list<std::string> paths) {
    for (const auto& p : paths)
        if (!p.empty() && access(p.c_str(), X_OK) == 0) return p;
    return {};
}

std::optional<Tools> find_tools(std::string& error) {
    Tools t;
    t.self = self_executable();
    t.sshd = first_executable({"/usr/sbin/sshd", find_in_path("sshd")});
    t.keygen = first_executable({find_in_path("ssh-keygen"), "/usr/bin/ssh-keygen"});
    t.ip = first_executable({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", find_in_path("ip")});
    t.receiver = find_binary("qubesair-ssh-receive");
    t.client_vm = find_binary("qrexec-client-vm");
    if (!t.receiver.empty()) {
        fs::path dir = fs::path(t.receiver).parent_path();
        t.proxy = first_executable({(dir / kTransport).string(),
                                    (dir.parent_path() / "etc/qubes-rpc" / kTransport).string()});
    }
    std::string missing;
    if (t.sshd.empty()) missing += " sshd (apt install openssh-server)";
    if (t.keygen.empty()) missing += " ssh-keygen (apt install openssh-client)";
    if (find_in_path("ssh").empty()) missing += " ssh (apt install openssh-client)";
    if (t.ip.empty()) missing += " ip (apt install iproute2)";
    if (t.receiver.empty()) missing += " qubesair-ssh-receive";
    if (t.proxy.empty()) missing += std::string(" ") + kTransport;
    if (t.client_vm.empty()) missing += " qrexec-client-vm";
    if (!missing.empty()) {
        error = "a multi-host lab needs:" + missing;
        return std::nullopt;
    }
    return t;
}

struct Link {
    size_t a, b; // host indexes
    int index;   // 10.213.<index>.0/24; a is .1, b is .2
    std::string address_of(size_t host) const {
        return fmt::format("10.213.{}.{}", index, host == a ? 1 : 2);
    }
};

std::vector<Link> full_mesh(size_t hosts) {
    std::vector<Link> links;
    int index = 1;
    for (size_t a = 0; a < hosts; ++a)
        for (size_t b = a + 1; b < hosts; ++b)
            links.push_back({a, b, index++});
    return links;
}

const Link& link_between(const std::vector<Link>& links, size_t x, size_t y) {
    for (const auto& l : links)
        if ((l.a == x && l.b == y) || (l.a == y && l.b == x)) return l;
    return links.front(); // unreachable: full mesh
}

std::string air_dir(const std::string& host_state_dir) {
    return host_state_dir + "/air";
}

bool make_keys(const Tools& tools, const std::string& dir, const std::string& host) {
    for (const char* key : {"host_key", "id"}) {
        std::error_code ec;
        fs::remove(dir + "/" + key, ec);
        fs::remove(dir + "/" + key + std::string(".pub"), ec);
        if (run_program({tools.keygen, "-q", "-t", "ed25519", "-N", "", "-C",
                         fmt::format("qrexec-lab {} {}", host, key), "-f", dir + "/" + key},
                        0, true) != 0)
            return false;
    }
    return true;
}

std::string public_key(const std::string& dir, const char* key) {
    std::string text = read_file(dir + "/" + key + std::string(".pub")).value_or("");
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    return text;
}

// Writes host i's ssh client and server configuration; returns its AirSide.
AirSide write_host_config(const AirLab& lab, size_t i, const std::vector<Link>& links,
                          const std::vector<std::string>& state_dirs, const Tools& tools) {
    const AirHost& me = lab.hosts[i];
    std::string dir = air_dir(state_dirs[i]);
    std::string ssh_config, known_hosts, targets, authorized;
    make_dir(dir + "/names", 0700);
    for (size_t p = 0; p < lab.hosts.size(); ++p) {
        if (p == i) continue;
        const AirHost& peer = lab.hosts[p];
        const Link& link = link_between(links, i, p);
        std::string peer_dir = air_dir(state_dirs[p]);
        ssh_config += fmt::format(
            "Host {}\n  HostName {}\n  Port 22\n  User root\n  IdentityFile {}/id\n"
            "  IdentitiesOnly yes\n  UserKnownHostsFile {}/known_hosts\n"
            "  GlobalKnownHostsFile /dev/null\n  HostKeyAlias {}\n  StrictHostKeyChecking yes\n"
            "  CheckHostIP no\n  BatchMode yes\n  ControlMaster auto\n  ControlPath {}/cm-%n\n"
            "  ControlPersist 600\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n"
            "  ConnectTimeout 5\n  ClearAllForwardings yes\n  LogLevel ERROR\n\n",
            peer.name, link.address_of(p), dir, dir, peer.name, dir);
        known_hosts += peer.name + " " + public_key(peer_dir, "host_key") + "\n";
        std::string names;
        for (const Domain* d : peer.exported()) {
            targets += d->name + " " + peer.name + "\n";
            names += d->name + "\n";
        }
        write_file_atomic(
            dir + "/names/" + peer.name,
            "# domains of host " + peer.name + " that may call in (one name each)\n" + names, 0600);
        // The peer's key can run exactly one thing: the receiver, which presents
        // callers only under the names that peer's domains have here.
        authorized += fmt::format("restrict,from=\"{}\",command=\"{} --peer={} --names={}/names/{} "
                                  "--client={}/relay-client\" "
                                  "{}\n",
                                  link.address_of(p), tools.receiver, peer.name, dir, peer.name,
                                  dir, public_key(peer_dir, "id"));
    }
    write_file_atomic(dir + "/ssh_config", ssh_config, 0600);
    write_file_atomic(dir + "/known_hosts", known_hosts, 0600);
    write_file_atomic(dir + "/targets", targets, 0600);
    write_file_atomic(dir + "/authorized_keys", authorized, 0600);
    const Domain* relay = me.lab.find(me.relay);
    StatePaths host_paths{state_dirs[i]};
    write_file_atomic(dir + "/relay-client",
                      fmt::format("#!/bin/sh\n# qrexec-client-vm inside {}'s relay {}\n"
                                  "# Its vchan sockets, like the agents', must be reachable by\n"
                                  "# domains of other users (the vchan dir guards them).\n"
                                  "umask 000\n"
                                  "export VCHAN_DOMAIN={} VCHAN_SOCKET_DIR={}\n"
                                  "exec {} --agent-socket={} \"$@\"\n",
                                  me.name, me.relay, relay->domid, quote_sh(host_paths.vchan_dir()),
                                  quote_sh(tools.client_vm),
                                  quote_sh(host_paths.agent_socket(me.relay))),
                      0755);
    write_file_atomic(
        dir + "/sshd_config",
        fmt::format("# qrexec-lab: the OpenSSH server of host {} (in its network namespace)\n"
                    "ListenAddress 0.0.0.0:22\nHostKey {}/host_key\nPidFile {}/sshd.pid\n"
                    "AuthorizedKeysFile {}/authorized_keys\nAuthorizedPrincipalsFile none\n"
                    "StrictModes no\nPermitRootLogin forced-commands-only\nAllowUsers root\n"
                    "PubkeyAuthentication yes\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nHostbasedAuthentication no\nUsePAM no\n"
                    "PermitUserEnvironment no\nAllowTcpForwarding no\nX11Forwarding no\n"
                    "AllowAgentForwarding no\nPermitTunnel no\nPrintMotd no\n"
                    "MaxSessions 64\nMaxStartups 64\nLogLevel INFO\n"
                    "# bash sources ~/.bashrc for commands run by sshd unless it is a nested\n"
                    "# shell: the forced command must not depend on root's shell setup.\n"
                    "SetEnv SHLVL=1\n",
                    me.name, dir, dir, dir),
        0600);
    // The relay's qubesair.SSHProxy: the installed one, told where this host's
    // configuration is (a root agent's services start from a clean environment).
    make_dir(dir + "/services", 0755);
    write_file_atomic(dir + "/services/" + kTransport,
                      fmt::format("#!/bin/sh\n# qrexec-lab: {} of host {}\n"
                                  "QUBESAIR_SSH_DIR={} exec {} \"$@\"\n",
                                  kTransport, me.name, quote_sh(dir), quote_sh(tools.proxy)),
                      0755);

    AirSide air;
    air.relay = me.relay;
    air.ssh_dir = dir;
    air.services_dir = dir + "/services";
    air.sshd = tools.sshd;
    air.sshd_config = dir + "/sshd_config";
    air.sshd_pid_file = dir + "/sshd.pid";
    for (size_t p = 0; p < lab.hosts.size(); ++p) {
        if (p == i) continue;
        for (const Domain* d : lab.hosts[p].exported())
            air.remotes.push_back(RemoteDomain{d->name, me.relay, kTransport, d->tags});
    }
    return air;
}

bool configure_link(const Tools& tools, const Link& link, const std::vector<pid_t>& holders) {
    std::string name = fmt::format("air{}", link.index);
    if (run_program({tools.ip, "link", "add", "name", name, "netns",
                     std::to_string(holders[link.a]), "type", "veth", "peer", "name", name, "netns",
                     std::to_string(holders[link.b])}) != 0)
        return false;
    for (size_t host : {link.a, link.b}) {
        pid_t ns = holders[host];
        if (run_program({tools.ip, "addr", "add", link.address_of(host) + "/24", "dev", name},
                        ns) != 0 ||
            run_program({tools.ip, "link", "set", name, "up"}, ns) != 0 ||
            run_program({tools.ip, "link", "set", "lo", "up"}, ns) != 0)
            return false;
    }
    return true;
}

void down_host(const std::string& self, const AirHostState& host) {
    run_program({self, "--state-dir=" + host.state_dir, "down"}, 0, true);
    kill_netns(host.netns);
}

} // namespace

// ---------------------------------------------------------------------------

int air_up(const Context& ctx, const AirLab& lab) {
    if (auto running = load_air_state(ctx.paths)) {
        bool alive = false;
        for (const auto& h : running->hosts)
            alive = alive || !processes_in_netns(h.netns).empty();
        if (alive && running->file == lab.file) {
            fmt::print("lab '{}' is already up\n", running->name);
            return air_status(ctx, *running);
        }
        if (alive) {
            fmt::print(stderr,
                       "qrexec-lab: another lab ('{}', {}) is up in {}\n  hint: 'qrexec-lab down' "
                       "first, or use another --state-dir\n",
                       running->name, running->file, ctx.paths.root);
            return 1;
        }
        air_down(ctx, *running);
    }
    if (geteuid() != 0) {
        fmt::print(stderr, "qrexec-lab: a multi-host lab needs root (each host is a network "
                           "namespace with its own sshd)\n  hint: run it with sudo\n");
        return 1;
    }
    std::string error;
    auto tools = find_tools(error);
    if (!tools) {
        fmt::print(stderr, "qrexec-lab: {}\n", error);
        return 1;
    }
    // sshd's privilege separation directory (Debian's package creates it at boot).
    make_dir("/run/sshd", 0755);
    if (!make_dir(ctx.paths.root, 0711)) {
        fmt::print(stderr, "qrexec-lab: cannot create {}\n", ctx.paths.root);
        return 1;
    }
    std::vector<std::string> state_dirs;
    for (const auto& h : lab.hosts) {
        state_dirs.push_back(ctx.paths.root + "/" + h.name);
        std::error_code ec;
        fs::remove_all(air_dir(state_dirs.back()), ec);
        if (!make_dir(air_dir(state_dirs.back()), 0700) ||
            !make_keys(*tools, air_dir(state_dirs.back()), h.name)) {
            fmt::print(stderr, "qrexec-lab: cannot make the ssh keys of host {}\n", h.name);
            return 1;
        }
    }
    auto links = full_mesh(lab.hosts.size());
    AirState state{lab.name, lab.file, {}};
    std::vector<pid_t> holders;
    auto abandon = [&](const std::string& why) {
        fmt::print(stderr, "qrexec-lab: the lab did not come up: {}\n", why);
        for (const auto& h : state.hosts)
            down_host(tools->self, h);
        std::error_code ec;
        fs::remove(air_state_path(ctx.paths), ec);
        return 1;
    };
    std::vector<io::Child> ups;
    std::vector<std::string> outputs;
    for (size_t i = 0; i < lab.hosts.size(); ++i) {
        AirSide air = write_host_config(lab, i, links, state_dirs, *tools);
        std::string air_file = air_dir(state_dirs[i]) + "/air.json";
        write_file_atomic(air_file, air_side_to_json(air), 0600);
        outputs.push_back(air_dir(state_dirs[i]) + "/up.out");
        io::Fd out(open(outputs.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        ups.push_back(up_host_in_new_netns(tools->self, state_dirs[i], lab.hosts[i].lab.file,
                                           air_file, out ? out.get() : -1));
    }
    std::string failed;
    for (size_t i = 0; i < lab.hosts.size(); ++i) {
        const AirHost& h = lab.hosts[i];
        int status = ups[i].wait();
        fmt::print("== host {} ==\n{}", h.name, read_file(outputs[i]).value_or(""));
        std::fflush(stdout);
        pid_t supervisor = 0;
        if (auto text = read_file(StatePaths{state_dirs[i]}.supervisor_pid()))
            if (auto id = process_id_from_text(*text)) supervisor = id->pid;
        AirHostState hs{
            h.name, state_dirs[i], h.lab.file, supervisor ? netns_inode(supervisor) : 0, {}};
        for (const auto& d : h.lab.domains)
            hs.domains.push_back(d.name);
        state.hosts.push_back(hs);
        holders.push_back(supervisor);
        if ((status != 0 || !supervisor) && failed.empty()) failed = h.name;
    }
    write_file_atomic(air_state_path(ctx.paths), air_state_to_json(state));
    if (!failed.empty()) return abandon("host " + failed + " did not come up (see above)");
    for (const auto& link : links)
        if (!configure_link(*tools, link, holders))
            return abandon(fmt::format("cannot link hosts {} and {}", lab.hosts[link.a].name,
                                       lab.hosts[link.b].name));
    fmt::print("\nmulti-host lab '{}' is up (state dir {})\n", lab.name, ctx.paths.root);
    for (size_t i = 0; i < lab.hosts.size(); ++i) {
        std::string addresses, remotes;
        for (const auto& l : links)
            if (l.a == i || l.b == i)
                addresses += (addresses.empty() ? "" : ", ") + l.address_of(i);
        for (size_t p = 0; p < lab.hosts.size(); ++p)
            if (p != i)
                for (const Domain* d : lab.hosts[p].exported())
                    remotes += (remotes.empty() ? "" : ", ") + d->name;
        fmt::print("  host {:<8} relay {:<10} ssh at {}; remote domains: {}\n", lab.hosts[i].name,
                   lab.hosts[i].relay, addresses, remotes);
    }
    fmt::print("calls: qrexec-lab call SOURCE TARGET SERVICE   log: qrexec-lab log   stop: "
               "qrexec-lab down\n");
    return 0;
}

int air_down(const Context& ctx, const AirState& state) {
    std::string self = self_executable();
    for (const auto& h : state.hosts)
        down_host(self, h);
    std::error_code ec;
    fs::remove(air_state_path(ctx.paths), ec);
    fmt::print("lab '{}' is down\n", state.name);
    return 0;
}

int air_status(const Context&, const AirState& state) {
    int worst = 0;
    for (const auto& h : state.hosts) {
        fmt::print("== host {} ==\n", h.name);
        Context host{StatePaths{h.state_dir}};
        worst = std::max(worst, cmd_status(host, {}));
    }
    return worst;
}

std::string air_host_of(const AirState& state, const std::string& domain, const char* command) {
    std::string names;
    for (const auto& h : state.hosts)
        for (const auto& d : h.domains) {
            if (d == domain) return h.state_dir;
            names += (names.empty() ? "" : ", ") + h.name + ":" + d;
        }
    fmt::print(stderr, "qrexec-lab {}: no domain '{}' in this lab (domains: {})\n", command, domain,
               names);
    return {};
}

int air_command(const Context& ctx, const AirState& state, const std::string& command,
                const Args& args) {
    if (command == "down") return air_down(ctx, state);
    if (command == "status") return air_status(ctx, state);
    if (command == "log") return air_log(ctx, state, args);
    if (command != "call" && command != "run" && command != "shell")
        return usage_error(fmt::format("'{}' is not available in a multi-host lab", command));
    // The host that has the domain the command is about (the caller for call/shell,
    // the target for run) runs it, as in a one-host lab.
    std::string domain;
    for (size_t i = 0; i < args.size() && domain.empty(); ++i) {
        if (args[i] == "--") break;
        if (args[i] == "--user" || args[i] == "-u") {
            ++i;
            continue;
        }
        if (!args[i].empty() && args[i][0] != '-') domain = args[i];
    }
    if (domain.empty()) return usage_error(command + " needs a domain", command);
    std::string host_dir = air_host_of(state, domain, command.c_str());
    if (host_dir.empty()) return 1;
    Context host{StatePaths{host_dir}};
    if (command == "call") return cmd_call(host, args);
    if (command == "run") return cmd_run(host, args);
    return cmd_shell(host, args);
}

int air_log(const Context&, const AirState& state, const Args& args) {
    bool as_json = false;
    for (const auto& a : args) {
        if (a == "--json")
            as_json = true;
        else
            return usage_error("a multi-host lab's log takes only --json", "log");
    }
    struct Tagged {
        std::string host;
        CallRecord record;
    };
    std::vector<Tagged> all;
    for (const auto& h : state.hosts) {
        std::vector<CallRecord> records;
        std::string text = read_file(StatePaths{h.state_dir}.calls_log()).value_or("");
        size_t pos = 0;
        while (pos < text.size()) {
            size_t end = text.find('\n', pos);
            if (end == std::string::npos) break;
            if (auto r = record_from_json(text.substr(pos, end - pos))) records.push_back(*r);
            pos = end + 1;
        }
        for (auto& r : merge_records(std::move(records)))
            all.push_back({h.name, std::move(r)});
    }
    std::stable_sort(all.begin(), all.end(), [](const Tagged& x, const Tagged& y) {
        return x.record.time < y.record.time;
    });
    if (!as_json) fmt::print("{:<8} {}\n", "HOST", format_header());
    for (const auto& t : all) {
        if (as_json) {
            json j = json::parse(record_to_json(t.record));
            j["host"] = t.host;
            fmt::print("{}\n", j.dump());
        } else {
            fmt::print("{:<8} {}\n", t.host, format_record(t.record));
        }
    }
    return 0;
}

} // namespace qrexec::lab
