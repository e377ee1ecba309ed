// The policy engine's in-process API: load the policy from its directories, evaluate a
// request against it and a system-information snapshot. Evaluation is pure (no I/O):
// an `ask` that needs a user is returned as Outcome::Ask and finished with
// answer_ask() once the prompt (if any) has answered.
#pragma once

#include "policy/loader.h"
#include "policy/parser.h"
#include "policy/system_info.h"

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace qrexec::policy {

struct Request {
    std::string source;           // the calling VM (name)
    std::string intended_target;  // as sent by the caller ("" = @default)
    std::string service_and_arg;  // "service[+arg]"
    std::string requested_source; // relayed calls (protocol 4); "" = none
    bool assume_yes_for_ask = false;
    bool just_evaluate = false;
};

enum class Outcome { Allow, Deny, Ask };

// What a pending `ask` needs to be answered (the policy.Ask payload) and finished.
struct AskState {
    std::string source; // effective source (after requested_source)
    std::string service;
    std::string argument;             // with the leading '+'
    std::vector<std::string> targets; // sorted
    std::string default_target;       // "" = none
    std::string requested_target;     // normalised intended target
    std::optional<std::string> user;
    bool autostart = true;
    bool notify = false;
    std::optional<std::string> policy_source;
    bool just_evaluate = false;
};

struct Decision {
    Outcome outcome = Outcome::Deny;
    // The key=value reply of DAEMON.md §5.3, lines joined with '\n', no trailing newline.
    // Empty while outcome == Ask.
    std::string answer;
    std::optional<Location> rule;      // the deciding rule, if any
    std::string reason;                // human-readable (log line, explain)
    std::vector<std::string> warnings; // logged before the decision (e.g. unknown targets)
    // Whether upstream would send a policy.Notify for this outcome (never set in
    // just_evaluate mode).
    bool notify = false;
    // For notifications and logs.
    std::string source, service, argument, target;
    std::optional<AskState> ask; // set when outcome == Ask

    bool allowed() const { return outcome == Outcome::Allow; }
};

Decision evaluate(const Policy& policy, const SystemInfo& system, const Request& request);
// A request whose system information could not be obtained: deny, no notification.
Decision deny_without_system_info(const Request& request, const std::string& why);

// Finishes an ask: chosen = the target the user picked, nullopt = refused.
Decision answer_ask(const Decision& pending, const SystemInfo& system,
                    const std::optional<std::string>& chosen);

// evaluate(), with an `ask` answered at once by `prompt` (the target picked, nullopt =
// refused); no prompt = every ask is refused. For callers that can block on the prompt.
using Prompt = std::function<std::optional<std::string>(const AskState&)>;
Decision decide(const Policy& policy, const SystemInfo& system, const Request& request,
                const Prompt& prompt = {});

// For `qrexec-policy explain`: every rule up to the deciding one, and why each earlier
// one did not match (empty = it matched).
struct RuleTrace {
    const Rule* rule = nullptr;
    std::string mismatch; // "" when it matched
};
std::vector<RuleTrace> trace_rules(const Policy& policy, const SystemInfo& system,
                                   const Request& request);

} // namespace qrexec::policy
