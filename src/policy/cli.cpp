#include "policy/cli.h"

#include "io/log.h"

#include <nlohmann/json.hpp>

namespace qrexec::policy {

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
