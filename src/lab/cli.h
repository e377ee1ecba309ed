// What qrexec-lab's subcommands share: the context they run in, the lab-state
// helpers, and one entry point per subcommand (each in its own cmd_*.cpp).
#pragma once

#include "lab/state.h"

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

struct Context {
    StatePaths paths;
};

using Args = std::vector<std::string>;

// usage.cpp
const char* usage_text();
// Per-command help, by command name.
const std::map<std::string, std::string>& command_help();
// Prints "qrexec-lab: MESSAGE" and a hint; returns 2.
int usage_error(const std::string& message, const std::string& command = "");

// lab_context.cpp
std::string current_user_name();
// The running supervisor, if its recorded pid is still the same process.
std::optional<ProcessId> supervisor_of(const StatePaths& paths);
// The state of the running lab; says why on stderr unless quiet.
std::optional<LabState> load_running(const StatePaths& paths, bool quiet = false);
// The domain table; false if a component is not running.
bool print_status(const StatePaths& paths, const LabState& state);
// Kills what a dead supervisor left behind (by recorded pid + start time) and
// removes runtime files.
void clean_stale(const StatePaths& paths);
bool make_dir(const std::string& path, mode_t mode);
// The domain NAME, or a message naming the lab's domains.
const Domain* find_domain(const LabState& state, const std::string& name, const char* command);

// The subcommands.
int cmd_up(const Context& ctx, const Args& args);        // cmd_up.cpp
int cmd_check(const Context& ctx, const Args& args);     // cmd_up.cpp
int cmd_supervise(const Context& ctx, const Args& args); // cmd_up.cpp
int cmd_status(const Context& ctx, const Args& args);    // cmd_status.cpp
int cmd_down(const Context& ctx, const Args& args);      // cmd_down.cpp
int cmd_call(const Context& ctx, const Args& args);      // cmd_call.cpp
int cmd_run(const Context& ctx, const Args& args);       // cmd_run.cpp
int cmd_shell(const Context& ctx, const Args& args);     // cmd_shell.cpp
int cmd_ask(const Context& ctx, const Args& args);       // ask_client.cpp
int cmd_log(const Context& ctx, const Args& args);       // cmd_log.cpp
int cmd_demo(const Context& ctx, const Args& args);      // cmd_demo.cpp

} // namespace qrexec::lab
