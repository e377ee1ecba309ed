// The policy tools' logic (lint checks, explain text, graph), kept out of the mains so
// it is unit-testable. Pure: no I/O.
#pragma once

#include "policy/engine.h"

#include <string>
#include <vector>

namespace qrexec::policy {

// "file:line: warning: ..." for rules that can never be reached because an earlier
// rule matches everything they match.
std::vector<std::string> shadowed_rule_warnings(const std::vector<Rule>& rules);

// Human-readable account of a decision: the answer, the deciding rule's file:line and
// text, and why each earlier rule did not match.
std::string explain_text(const Policy& policy, const SystemInfo& system, const Request& request);

struct GraphOptions {
    std::vector<std::string> services; // empty = every service named in the policy
    std::vector<std::string> sources;  // empty = every VM
    std::vector<std::string> targets;  // empty = every VM, @default and @dispvm
    bool include_ask = true;           // ask edges are dashed
};

// Graphviz DOT: who may call what.
std::string policy_graph_dot(const Policy& policy, const SystemInfo& system,
                             const GraphOptions& options);

} // namespace qrexec::policy
