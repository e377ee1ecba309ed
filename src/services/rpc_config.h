// Per-service configuration (rpc-config, AGENT.md §5): a tiny TOML subset,
// parsed by hand so the accepted/rejected set matches upstream exactly.
#pragma once

#include "services/command.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::services {

struct RpcConfig {
    bool wait_for_session = false;
    std::optional<std::string> force_user;
    bool skip_service_descriptor = false;
    bool exit_on_client_eof = false;
    bool exit_on_service_eof = false;
};

// Parses a whole file's content. nullopt + error text on any error.
std::optional<RpcConfig> parse_rpc_config(std::string_view content, std::string* error = nullptr);

struct ConfigLoad {
    bool ok = false;
    RpcConfig config; // defaults when no file exists
    std::string error;
};

// find(config_dirs, "SERVICE+ARG") then "SERVICE"; absent -> defaults; lookup error,
// unreadable file or parse error -> !ok (the call fails with 125).
ConfigLoad load_rpc_config(const std::vector<std::string>& config_dirs,
                           const ParsedCommand& command);

} // namespace qrexec::services
