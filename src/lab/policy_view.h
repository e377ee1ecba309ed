// The lab's read-only view of its policy, through the policy room's engine:
// syntax errors at `up` time, and "which rule decides this call" for the log.
#pragma once

#include "lab/labfile.h"

#include <optional>
#include <string>

namespace qrexec::lab {

// A policy that would fail to load (everything denied) as a lab-file diagnostic.
std::optional<Diagnostic> check_policy(const Lab& lab);

struct RuleVerdict {
    std::string outcome; // "allow", "deny", "ask"
    std::string rule;    // "30-lab.policy:7" (relative to the lab's policy folder), "" if none
    std::string reason;
};

// Evaluates source -> target service+arg against the lab's policy and the
// system-info file, as the policy daemon would (without asking anyone).
RuleVerdict deciding_rule(const Lab& lab, const std::string& system_info_file,
                          const std::string& source, const std::string& target,
                          const std::string& service_and_arg);

} // namespace qrexec::lab
