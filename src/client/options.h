// qrexec-client command line (DAEMON.md §7, §7.1).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::client {

struct ConnectRequest { // -c REQID,SRC_NAME,SRC_ID
    std::string request_id;
    std::string source_name;
    int source_id = 0;
};

struct ClientOptions {
    std::string program = "qrexec-client";    // basename of argv[0], for messages
    std::string domain;                       // -d
    std::optional<std::string> local_command; // -l
    bool just_exec = false;                   // -e
    bool no_exit_code = false;                // -E
    std::optional<ConnectRequest> connect;    // -c
    std::optional<std::string> prefix_data;   // -p
    bool filter_stdout = false;               // -t
    bool filter_stderr = false;               // -T
    int timeout_seconds = 10;                 // -w (0 = forever)
    bool wait = false;                        // -W
    bool kill = false;                        // -k
    std::string socket_dir = "/var/run/qubes";
    bool use_stdin_socket = false;
    std::string command; // first non-option argument
};

// Either options to run with, or the exit code to leave with (messages printed).
struct ParsedOptions {
    std::optional<ClientOptions> options;
    int exit_code = 0;
};

ParsedOptions parse_client_options(int argc, char** argv);

// dom0, @adminvm, or the all-zero uuid.
bool is_dom0_name(std::string_view name);

void print_usage(const std::string& program, bool to_stderr);

} // namespace qrexec::client
