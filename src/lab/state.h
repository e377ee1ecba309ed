// Where a running lab keeps its things (the state dir) and the files in it:
// the resolved lab (lab.json), the generated system info, the supervisor's
// record and the component table it keeps up to date.
#pragma once

#include "lab/labfile.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

struct StatePaths {
    std::string root;
    std::string lab_json() const { return root + "/lab.json"; }
    std::string system_info() const { return root + "/system-info.json"; }
    std::string supervisor_pid() const { return root + "/supervisor.pid"; }
    std::string components() const { return root + "/components.json"; }
    std::string policy_socket() const { return root + "/policy.sock"; }
    // What the daemons are told to ask: the supervisor's tap, which forwards to
    // policy.sock and logs each decision.
    std::string policy_tap_socket() const { return root + "/policy-tap.sock"; }
    std::string daemon_dir() const { return root + "/daemon"; }
    std::string vchan_dir() const { return root + "/vchan"; }
    std::string run_dir() const { return root + "/run"; }
    std::string domain_run_dir(const std::string& name) const { return run_dir() + "/" + name; }
    std::string agent_socket(const std::string& name) const {
        return domain_run_dir(name) + "/agent.sock";
    }
    std::string daemon_socket(int domid) const {
        return daemon_dir() + "/qrexec." + std::to_string(domid);
    }
    std::string logs_dir() const { return root + "/logs"; }
    std::string log_file(const std::string& component) const {
        return logs_dir() + "/" + component + ".log";
    }
    std::string calls_log() const { return root + "/calls.log"; }
    std::string ask_dir() const { return root + "/ask"; }
    std::string asks_log() const { return root + "/asks.log"; }
    std::string ask_command() const { return root + "/ask-command"; }
    std::string empty_dir() const { return root + "/empty"; }
    // Copies of the programs domains' users cannot run where they are installed.
    std::string bin_dir() const { return root + "/bin"; }
};

// --state-dir, else $QREXEC_LAB_STATE_DIR, else /run/qrexec-lab for root, else
// $XDG_RUNTIME_DIR/qrexec-lab, else /tmp/qrexec-lab-$UID.
std::string default_state_dir();

// The binaries a lab drives, resolved once by `up` and kept in lab.json.
struct Binaries {
    std::string agent, daemon, client, client_vm, policy_daemon, policy_exec, policy, bwrap, lab;
};

// Looks for a sibling binary: $QREXEC_LAB_BIN_DIR/<name> or .../apps/<name>/<name>,
// then next to this executable, then ../<name>/<name> (build tree). Empty if absent.
std::string find_binary(const std::string& name);
std::string self_executable();
// Searches $PATH (for bwrap).
std::string find_in_path(const std::string& name);

// Everything `up` resolved; what the other commands read.
struct LabState {
    Lab lab;
    Binaries bin;
    std::string invoking_user;
    uid_t invoking_uid = 0;
};

std::string lab_state_to_json(const LabState& state);
std::string air_side_to_json(const AirSide& air);
std::optional<AirSide> air_side_from_json(const std::string& text, std::string* error);
std::optional<LabState> lab_state_from_json(const std::string& text, std::string* error);

// The system-info document the policy engine reads (dom0 + every domain, all Running).
std::string system_info_json(const Lab& lab);

// A process identity that survives pid reuse: pid + start time from /proc.
struct ProcessId {
    pid_t pid = 0;
    unsigned long long start_time = 0;
    bool alive() const; // same process still exists (zombies count as gone)
};
std::optional<ProcessId> process_id_of(pid_t pid);
std::string process_id_to_text(const ProcessId& id);
std::optional<ProcessId> process_id_from_text(const std::string& text);

// The supervisor's table, as written to components.json.
struct Component {
    std::string name;   // "policy-daemon", "agent:work", "daemon:work"
    std::string domain; // "" for the policy daemon
    std::string role;   // "policy-daemon", "agent", "daemon"
    ProcessId process;
    std::string state;  // "starting", "running", "exited", "stopped"
    std::string detail; // exit description
    std::string log;    // log file path
};
std::string components_to_json(const std::vector<Component>& components, bool ready);
std::vector<Component> components_from_json(const std::string& text, bool* ready);

// Small file helpers.
std::optional<std::string> read_file(const std::string& path);
// Writes via a temp file + rename so readers never see half a file.
bool write_file_atomic(const std::string& path, const std::string& text, mode_t mode = 0644);
bool append_line(const std::string& path, const std::string& line);

// "exited with status 3", "killed by signal 9 (Killed)" from a raw waitpid status.
std::string describe_wait_status(int raw_status);

} // namespace qrexec::lab
