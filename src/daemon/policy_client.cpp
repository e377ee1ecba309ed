#include "daemon/policy_client.h"

#include "protocol/domains.h"

#include <array>

namespace qrexec::daemon {

std::string format_policy_request(const PolicyQuery& query) {
    std::string text = "source=" + query.source + "\n";
    if (query.requested_source) text += "requested_source=" + *query.requested_source + "\n";
    text += "intended_target=" + query.intended_target + "\n";
    text += "service_and_arg=" + query.service_and_arg + "\n\n";
    return text;
}

std::vector<std::string> policy_program_argv(const PolicyQuery& query) {
    return {"qrexec-policy-exec", "--", query.source, query.intended_target, query.service_and_arg};
}

namespace {

enum Key {
    kResult,
    kUser,
    kTarget,
    kTargetUuid,
    kAutostart,
    kRequestedTarget,
    kService,
    kPolicySource,
    kKeyCount
};

constexpr std::array<std::string_view, kKeyCount> kKeyNames = {
    "result",           "user",    "target",       "target_uuid", "autostart",
    "requested_target", "service", "policy_source"};

std::optional<Key> find_key(std::string_view name) {
    for (size_t i = 0; i < kKeyNames.size(); ++i)
        if (kKeyNames[i] == name) return static_cast<Key>(i);
    return std::nullopt;
}

PolicyParse malformed(std::string error) {
    PolicyParse parse;
    parse.error = std::move(error);
    return parse;
}

} // namespace

PolicyParse parse_policy_reply(std::string_view reply) {
    if (reply.empty()) return malformed("empty policy reply");
    if (reply.find('\0') != std::string_view::npos) return malformed("NUL byte in policy reply");
    if (reply.back() == '\n') reply.remove_suffix(1);

    std::array<std::optional<std::string>, kKeyCount> values;
    PolicyParse parse;
    size_t pos = 0;
    for (;;) {
        size_t end = reply.find('\n', pos);
        std::string_view line =
            reply.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        size_t eq = line.find('=');
        if (eq == std::string_view::npos)
            return malformed("policy reply line without '=': '" + std::string(line) + "'");
        auto key = find_key(line.substr(0, eq));
        if (!key) {
            parse.ignored_lines.emplace_back(line);
        } else {
            if (values[*key])
                return malformed("duplicate key in policy reply: " + std::string(kKeyNames[*key]));
            values[*key] = std::string(line.substr(eq + 1));
        }
        if (end == std::string_view::npos) break;
        pos = end + 1;
    }

    if (!values[kResult]) return malformed("policy reply without result=");
    PolicyDecision decision;
    if (*values[kResult] == "allow")
        decision.allow = true;
    else if (*values[kResult] != "deny")
        return malformed("invalid result in policy reply: " + *values[kResult]);

    const Key allow_keys[] = {kUser, kTarget, kRequestedTarget, kAutostart};
    for (Key key : allow_keys) {
        if (decision.allow && !values[key])
            return malformed("allow without " + std::string(kKeyNames[key]) + "=");
        if (!decision.allow && values[key])
            return malformed("deny with " + std::string(kKeyNames[key]) + "=");
    }
    if (decision.allow) {
        if (*values[kAutostart] == "True")
            decision.autostart = true;
        else if (*values[kAutostart] != "False")
            return malformed("invalid autostart value: " + *values[kAutostart]);
        decision.user = *values[kUser];
        decision.target = *values[kTarget];
        decision.requested_target = *values[kRequestedTarget];
    }
    decision.target_uuid = values[kTargetUuid];
    decision.service = values[kService];
    decision.policy_source = values[kPolicySource];
    parse.decision = std::move(decision);
    return parse;
}

bool is_dom0_name(std::string_view name) {
    return protocol::is_dom0(name);
}

CallPlan plan_call(const PolicyDecision& decision, std::string_view requested_service,
                   std::string_view domname) {
    CallPlan plan;
    std::string service(decision.service ? std::string_view(*decision.service) : requested_service);
    if (service.find('+') == std::string::npos) service += '+';
    plan.source = decision.policy_source ? *decision.policy_source : std::string(domname);
    plan.autostart = decision.autostart;
    if (is_dom0_name(decision.target) ||
        (decision.target_uuid && is_dom0_name(*decision.target_uuid))) {
        plan.to_dom0 = true;
        const auto& rt = decision.requested_target;
        plan.command =
            "QUBESRPC " + service + " " + plan.source +
            (!rt.empty() && rt.front() == '@' ? " keyword " + rt.substr(1) : " name " + rt);
        return plan;
    }
    plan.command = decision.user + ":QUBESRPC " + service + " " + plan.source;
    plan.destination = decision.target_uuid ? *decision.target_uuid : decision.target;
    return plan;
}

std::optional<std::string> dispvm_template(std::string_view destination) {
    constexpr std::string_view prefix = "@dispvm:";
    if (destination.substr(0, prefix.size()) != prefix) return std::nullopt;
    return std::string(destination.substr(prefix.size()));
}

bool is_safe_destination(std::string_view destination) {
    // "qrexec." + destination must fit sun_path (108) relative to the socket dir.
    return !destination.empty() && destination.size() <= 90 && destination != "." &&
           destination != ".." && destination.find('/') == std::string_view::npos &&
           destination.find('\0') == std::string_view::npos;
}

} // namespace qrexec::daemon
