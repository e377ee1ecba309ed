#include "policy_server/decision_log.h"

#include "io/log.h"

#include <nlohmann/json.hpp>

namespace qrexec::policy {

std::string decision_log_line(const Decision& d) {
    std::string what = d.service + d.argument + ": " + d.source + " -> " +
                       (d.target.empty() ? "@default" : d.target);
    switch (d.outcome) {
    case Outcome::Allow:
        return what + ": allowed (" + d.reason + ")";
    case Outcome::Deny:
        return what + ": denied: " + d.reason;
    case Outcome::Ask:
        return what + ": asking (" + d.reason + ")";
    }
    return what;
}

void log_decision(const Decision& d) {
    for (const auto& warning : d.warnings)
        QLOG("warning: {}", warning);
    QLOG("{}", decision_log_line(d));
}

ExecReport exec_report(const Decision& decision, bool just_evaluate) {
    ExecReport report;
    const std::string& answer = decision.answer;
    bool allowed = answer == "result=allow";
    // A middle line: preceded and followed by a newline.
    for (size_t at = answer.find("\nresult=allow\n"); !allowed && at != std::string::npos;
         at = answer.find("\nresult=allow\n", at + 1))
        allowed = true;
    report.status = allowed ? 0 : 1;
    if (!just_evaluate) report.output = answer + "\n";
    return report;
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
