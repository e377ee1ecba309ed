// Environment and argv of a service process (AGENT.md §4.5).
#pragma once

#include "services/command.h"

#include <string>
#include <vector>

namespace qrexec::services {

// "NAME=value" strings.
using EnvList = std::vector<std::string>;

// The calling process's environment as a list.
EnvList current_environment();

// Step 1 + 2 of AGENT.md §4.5: drops every QREXEC* variable except
// QREXEC_SERVICE_PATH / QREXEC_AGENT_PID, then adds the call's variables.
EnvList build_service_environment(const EnvList& base, const ParsedCommand& command);

// [path] + [ARG] when ARG is non-empty.
std::vector<std::string> build_service_argv(const std::string& path, const ParsedCommand& command);

// Sets or replaces NAME in env.
void set_env(EnvList& env, std::string_view name, std::string_view value);
// Value of NAME, or nullptr.
const std::string* find_env(const EnvList& env, std::string_view name);

} // namespace qrexec::services
