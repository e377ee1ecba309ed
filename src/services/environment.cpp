#include "services/environment.h"

#include <unistd.h>

namespace qrexec::services {
namespace {

std::string_view name_of(std::string_view entry) {
    return entry.substr(0, entry.find('='));
}

bool keep_inherited(std::string_view entry) {
    auto name = name_of(entry);
    if (!name.starts_with("QREXEC")) return true;
    return name == "QREXEC_SERVICE_PATH" || name == "QREXEC_AGENT_PID";
}

} // namespace

EnvList current_environment() {
    EnvList env;
    for (char** p = environ; p && *p; ++p)
        env.emplace_back(*p);
    return env;
}

void set_env(EnvList& env, std::string_view name, std::string_view value) {
    std::string entry = std::string(name) + "=" + std::string(value);
    for (auto& existing : env) {
        if (name_of(existing) == name) {
            existing = std::move(entry);
            return;
        }
    }
    env.push_back(std::move(entry));
}

const std::string* find_env(const EnvList& env, std::string_view name) {
    for (const auto& entry : env)
        if (name_of(entry) == name) return &entry;
    return nullptr;
}

EnvList build_service_environment(const EnvList& base, const ParsedCommand& command) {
    EnvList env;
    for (const auto& entry : base)
        if (keep_inherited(entry)) env.push_back(entry);
    set_env(env, "QREXEC_SERVICE_FULL_NAME", command.descriptor);
    set_env(env, "QREXEC_REMOTE_DOMAIN", command.source_domain);
    if (command.argument) set_env(env, "QREXEC_SERVICE_ARGUMENT", *command.argument);
    if (auto target = requested_target(command)) {
        set_env(env, "QREXEC_REQUESTED_TARGET_TYPE", target->type);
        if (target->type == "name")
            set_env(env, "QREXEC_REQUESTED_TARGET", target->target);
        else if (target->type == "keyword")
            set_env(env, "QREXEC_REQUESTED_TARGET_KEYWORD", target->target);
    } else {
        set_env(env, "QREXEC_REQUESTED_TARGET_TYPE", "");
    }
    return env;
}

std::vector<std::string> build_service_argv(const std::string& path, const ParsedCommand& command) {
    std::vector<std::string> argv{path};
    if (!command.argument_or_empty().empty()) argv.emplace_back(command.argument_or_empty());
    return argv;
}

} // namespace qrexec::services
