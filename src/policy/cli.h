// Decision logging shared by the policy servers (qrexec-policy-exec and the policy
// daemon); not part of the pure engine.
#pragma once

#include "policy/engine.h"

#include <string>
#include <vector>

namespace qrexec::policy {

// One log line per decision, in the spirit of upstream's syslog lines.
void log_decision(const Decision& decision);

// What upstream sends as policy.Notify; here it is logged (there is no GUI VM to tell).
void notify_if_needed(const Decision& decision, const SystemInfo* system);

} // namespace qrexec::policy
