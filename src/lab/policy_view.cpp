#include "lab/policy_view.h"

#include "policy/cache.h"
#include "policy/engine.h"

#include <fmt/format.h>

namespace qrexec::lab {

namespace {
policy::PolicyPaths paths_of(const Lab& lab) {
    policy::PolicyPaths paths;
    paths.dirs = {lab.policy};
    // Legacy per-service files (!compat-4.0) live in the lab too, not in /etc.
    paths.legacy_dir = lab.policy + "/legacy";
    return paths;
}

// The policy room's cache, loaded once (the lab answers one question per run).
policy::CacheConfig cache_config(const Lab& lab, const std::string& system_info_file = {}) {
    policy::CacheConfig config;
    config.paths = paths_of(lab);
    config.system_info_file = system_info_file;
    config.log = false;
    return config;
}

std::string relative(const Lab& lab, std::string file) {
    if (file.rfind(lab.policy + "/", 0) == 0) file = file.substr(lab.policy.size() + 1);
    return file;
}
} // namespace

std::optional<Diagnostic> check_policy(const Lab& lab) {
    policy::PolicyCache cache(cache_config(lab));
    const policy::Policy& p = *cache.policy();
    if (p.ok()) return std::nullopt;
    Diagnostic d;
    if (p.error_location) {
        d.file = p.error_location->file;
        d.line = p.error_location->line;
    } else {
        d.file = lab.policy;
    }
    std::string message = *p.error;
    std::string prefix = d.file + ":" + std::to_string(d.line) + ": ";
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
    d.message = "policy error: " + message;
    d.hint = "fix the policy line (format: SERVICE ARG SOURCE TARGET ACTION [PARAMS]); with "
             "this error every call would be denied";
    return d;
}

RuleVerdict deciding_rule(const Lab& lab, const std::string& system_info_file,
                          const std::string& source, const std::string& target,
                          const std::string& service_and_arg) {
    RuleVerdict v;
    std::string error;
    policy::PolicyCache cache(cache_config(lab, system_info_file));
    auto system = cache.system_info(&error);
    if (!system) {
        v.outcome = "deny";
        v.reason = "no system info: " + error;
        return v;
    }
    policy::Request request;
    request.source = source;
    request.intended_target = target;
    request.service_and_arg = service_and_arg;
    policy::Decision d = policy::evaluate(*cache.policy(), *system, request);
    v.outcome = d.outcome == policy::Outcome::Allow ? "allow"
                : d.outcome == policy::Outcome::Ask ? "ask"
                                                    : "deny";
    if (d.rule) v.rule = fmt::format("{}:{}", relative(lab, d.rule->file), d.rule->line);
    v.reason = d.reason;
    return v;
}

} // namespace qrexec::lab
