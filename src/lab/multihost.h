// Multi-host labs (docs/REMOTE.md): a lab file whose [[host]] tables each name an
// ordinary lab file. Every host is brought up in its own network namespace with
// its own OpenSSH server; the domains of one host appear in the others' system
// information as RemoteVMs behind their relay, reached by qubesair.SSHProxy.
#pragma once

#include "lab/cli.h"
#include "lab/labfile.h"

#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

struct AirHost {
    std::string name;
    std::string relay; // a domain of this host that runs the transport service
    Lab lab;           // the host's own lab file, validated
    // Domains other hosts see as RemoteVMs (all but the relay).
    std::vector<const Domain*> exported() const;
};

struct AirLab {
    std::string file, name;
    std::vector<AirHost> hosts;
};

struct AirParseResult {
    std::optional<AirLab> lab;
    std::vector<Diagnostic> errors;
};

// Whether the lab file has [[host]] tables (then it is a multi-host lab).
bool is_multi_host_text(std::string_view text);
bool is_multi_host_file(const std::string& path);
// Parses the multi-host file and loads (and checks) every host's lab file.
AirParseResult load_air_lab(const std::string& path, const Host& probe);

// The running multi-host lab's record (ROOT/hosts.json).
struct AirHostState {
    std::string name, state_dir, lab_file;
    unsigned long long netns = 0; // inode of the host's network namespace
    std::vector<std::string> domains;
};
struct AirState {
    std::string name, file;
    std::vector<AirHostState> hosts;
};
std::string air_state_to_json(const AirState& state);
std::optional<AirState> air_state_from_json(const std::string& text);
std::string air_state_path(const StatePaths& paths);
std::optional<AirState> load_air_state(const StatePaths& paths);

int air_up(const Context& ctx, const AirLab& lab);
int air_down(const Context& ctx, const AirState& state);
int air_status(const Context& ctx, const AirState& state);
// down/status/log for the whole lab; call/run/shell on the host of their domain.
int air_command(const Context& ctx, const AirState& state, const std::string& command,
                const Args& args);
int air_log(const Context& ctx, const AirState& state, const Args& args);
// The state dir of the host that has DOMAIN, or "" (with a message naming the domains).
std::string air_host_of(const AirState& state, const std::string& domain, const char* command);

} // namespace qrexec::lab
