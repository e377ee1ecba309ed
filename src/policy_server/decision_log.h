// Decision logging shared by the policy servers (qrexec-policy-exec and the policy
// daemon); not part of the pure engine.
#pragma once

#include "policy/engine.h"

#include <string>
#include <vector>

namespace qrexec::policy {

// The log line of a decision, in the spirit of upstream's syslog lines:
// "SERVICE+ARG: SOURCE -> TARGET: allowed (REASON)" / "…: denied: REASON" / "…: asking (…)".
std::string decision_log_line(const Decision& decision);
// Logs the decision's warnings, then its line.
void log_decision(const Decision& decision);

// What qrexec-policy-exec reports for a decision (POLICY.md §11): the answer and a
// newline on stdout (nothing with --just-evaluate), and exit status 0 when the answer
// is exactly "result=allow" or has "result=allow" as a line that is neither the first
// nor the last, else 1.
struct ExecReport {
    std::string output;
    int status = 1;
};
ExecReport exec_report(const Decision& decision, bool just_evaluate);

// What upstream sends as policy.Notify; here it is logged (there is no GUI VM to tell).
void notify_if_needed(const Decision& decision, const SystemInfo* system);

} // namespace qrexec::policy
