// The lab file (TOML): the model of a lab and its validation. Pure except for
// the Host probe, which answers "does this folder/user exist" (tests fake it).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::lab {

enum class Isolation { none, sandbox };
enum class AskFallback { deny, allow };

struct Domain {
    std::string name;
    std::string type = "AppVM";
    std::vector<std::string> tags;
    std::string folder;     // absolute; what a sandbox sees, services' working directory
    std::string services;   // absolute
    std::string rpc_config; // absolute, empty = none
    std::string user;       // empty = the invoking user
    Isolation isolation = Isolation::none;
    int domid = 0;    // assigned in file order, from 1
    std::string uuid; // derived from the name, stable across runs
    int line = 0;     // where the [[domain]] table starts
};

struct Dom0 {
    std::string services;   // absolute, empty = none
    std::string rpc_config; // absolute, empty = none
};

// A domain of another host of a multi-host lab, as this host sees it: a
// RemoteVM reached through this host's relay (docs/REMOTE.md).
struct RemoteDomain {
    std::string name;
    std::string relay;         // this host's relay domain
    std::string transport_rpc; // the service the relay runs, e.g. qubesair.SSHProxy
    std::vector<std::string> tags;
};

// What a host of a multi-host lab has beyond a plain lab (empty otherwise).
// Written by the multi-host `up`, never by users.
struct AirSide {
    std::vector<RemoteDomain> remotes;
    std::string relay;        // the domain that runs the transport service
    std::string ssh_dir;      // its QUBESAIR_SSH_DIR (ssh_config, keys, targets)
    std::string services_dir; // holds qubesair.SSHProxy, appended to the relay's service path
    std::string sshd, sshd_config, sshd_pid_file; // this host's OpenSSH server
    bool enabled() const { return !relay.empty(); }
};

struct Lab {
    std::string file;   // absolute path of the lab file (empty for embedded labs)
    std::string name;   // display name ([lab] name, default: file stem)
    std::string policy; // absolute path of the policy folder
    AskFallback ask = AskFallback::deny;
    Dom0 dom0;
    std::vector<Domain> domains;
    AirSide air;

    const Domain* find(std::string_view domain_name) const;
};

// One rejected thing in a lab file: "<file>:<line>: <message>" plus a one-line fix hint.
struct Diagnostic {
    std::string file;
    int line = 0;
    std::string message;
    std::string hint;
    std::string format() const;
};

// What validation needs to know about the machine.
class Host {
  public:
    virtual ~Host() = default;
    virtual bool is_dir(const std::string& path) const = 0;
    virtual bool user_exists(const std::string& user) const = 0;
    // Entries (file names) of a folder; empty if unreadable.
    virtual std::vector<std::string> list_dir(const std::string& path) const = 0;
    virtual bool is_regular_file(const std::string& path) const = 0;
};

// The real file system and user database.
class RealHost final : public Host {
  public:
    bool is_dir(const std::string& path) const override;
    bool user_exists(const std::string& user) const override;
    std::vector<std::string> list_dir(const std::string& path) const override;
    bool is_regular_file(const std::string& path) const override;
};

struct ParseResult {
    std::optional<Lab> lab;
    std::vector<Diagnostic> errors; // non-empty iff !lab
};

// Parses and validates lab text. `path` names the file in diagnostics; relative
// folders are resolved against `base_dir`.
ParseResult parse_lab(std::string_view text, const std::string& path, const std::string& base_dir,
                      const Host& host);
// Reads the file, then parse_lab with base_dir = the file's folder.
ParseResult load_lab(const std::string& path, const Host& host);

// Name rules (qrexec/Qubes): a letter, then letters, digits, '_', '.', '-';
// at most 31 characters; not a reserved word. Returns an error text or nullopt.
std::optional<std::string> check_domain_name(std::string_view name);
std::optional<std::string> check_tag(std::string_view tag);
std::optional<std::string> check_user_name(std::string_view user);
// Policy file names must be [0-9a-z_.-] or the whole policy denies everything.
std::optional<std::string> check_policy_file_name(std::string_view name);

// Stable UUID derived from a domain name (dom0 has the all-zero UUID).
std::string domain_uuid(std::string_view name);

const char* isolation_name(Isolation isolation);

} // namespace qrexec::lab
