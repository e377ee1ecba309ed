// qrexec-daemon command line and environment (DAEMON.md §1).
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace qrexec::daemon {

struct Options {
    bool quiet = false;
    bool direct = false;
    std::string socket_dir = "/var/run/qubes";
    std::string policy_program = "/usr/bin/qrexec-policy-exec";
    std::optional<std::string> policy_socket; // --policy-socket (extension)
    std::optional<std::string> qrexec_client; // --qrexec-client (extension)
    bool policy_in_process = false;           // --policy-in-process (extension)
    std::string uuid;
    int domid = 0;
    std::string name;
    std::string default_user = "user";
};

struct ParseOutcome {
    std::optional<Options> options;
    int exit_code = 0;   // when !options
    std::string message; // printed (log format) before the usage, may be empty
    bool show_usage = false;
    bool log_message = false; // message is a log line (e.g. "domain id=0?")
};

// getopt_long based, like upstream (permutation, -pPATH, --opt=VAL, --opt VAL).
ParseOutcome parse_options(int argc, char* const argv[]);
std::string usage_text(const std::string& program);

// A boolean environment switch (QREXEC_POLICY_IN_PROCESS): "1", "yes" or
// "true" turn it on; unset, empty or anything else leaves it off.
bool env_flag_enabled(const char* value);

// QREXEC_STARTUP_TIMEOUT: seconds, default 60; non-positive or invalid -> 60.
int startup_timeout_seconds(const char* value);

// How long the daemon waits at each step of a VM-initiated request.
struct Timeouts {
    std::chrono::milliseconds policy{300'000};     // long: "ask" prompts wait for the user
    std::chrono::milliseconds qubesd{300'000};     // VM start / disposable creation
    std::chrono::milliseconds target{60'000};      // target daemon connect + reply
    std::chrono::milliseconds dom0_client{60'000}; // qrexec-client connecting back
    // A local client that has not sent its complete command by then is dropped
    // (like the agent's 10 s for qrexec-client-vm). QREXEC_CLIENT_IDLE_TIMEOUT.
    std::chrono::milliseconds client_idle{10'000};
    // A timed-out policy program gets SIGTERM (and SIGCONT), SIGKILL after this.
    std::chrono::milliseconds kill_grace{2'000};
};
// QREXEC_REQUEST_TIMEOUT (seconds, may be fractional) overrides every step.
Timeouts timeouts_from_environment(const char* override_value);
// Seconds (may be fractional, 0 < s <= 86400) from an environment value, or nullopt.
std::optional<std::chrono::milliseconds> seconds_from_environment(const char* value);

} // namespace qrexec::daemon
