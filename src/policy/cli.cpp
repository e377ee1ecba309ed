#include "policy/cli.h"

#include "io/log.h"

#include <nlohmann/json.hpp>

namespace qrexec::policy {

void append_policy_dirs(std::vector<std::string>& dirs, const std::string& value) {
    size_t start = 0;
    while (start <= value.size()) {
        auto colon = value.find(':', start);
        std::string part =
            value.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        if (!part.empty()) dirs.push_back(part);
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
}

PolicyPaths policy_paths_from(const std::vector<std::string>& option_dirs) {
    PolicyPaths paths = PolicyPaths::from_env();
    if (!option_dirs.empty()) paths.dirs = option_dirs;
    return paths;
}

void log_decision(const Decision& d) {
    std::string what = d.service + d.argument + ": " + d.source + " -> " +
                       (d.target.empty() ? "@default" : d.target);
    switch (d.outcome) {
    case Outcome::Allow:
        QLOG("{}: allowed ({})", what, d.reason);
        break;
    case Outcome::Deny:
        QLOG("{}: denied: {}", what, d.reason);
        break;
    case Outcome::Ask:
        QLOG("{}: asking ({})", what, d.reason);
        break;
    }
}

void notify_if_needed(const Decision& d, const SystemInfo* system) {
    if (!d.notify || d.outcome == Outcome::Ask) return;
    const Domain* source = system ? system->find(d.source) : nullptr;
    if (!source || !source->guivm) return;
    nlohmann::json payload = {
        {"resolution", d.allowed() ? "allow" : "deny"},
        {"service", d.service},
        {"argument", d.argument},
        {"source", d.source},
        {"target", d.target},
    };
    QLOG("policy.Notify to {}: {}", *source->guivm,
         payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

} // namespace qrexec::policy
