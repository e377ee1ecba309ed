// Helpers shared by the policy programs (not part of the pure engine).
#pragma once

#include "policy/engine.h"

#include <string>
#include <vector>

namespace qrexec::policy {

// Appends the directories of a --policy-dir value (a colon-separated list).
void append_policy_dirs(std::vector<std::string>& dirs, const std::string& value);

// Policy paths from --policy-dir values (if any), else $QREXEC_POLICY_DIR, else the
// defaults; the legacy dir from $QREXEC_LEGACY_POLICY_DIR or the default.
PolicyPaths policy_paths_from(const std::vector<std::string>& option_dirs);

// One log line per decision, in the spirit of upstream's syslog lines.
void log_decision(const Decision& decision);

// What upstream sends as policy.Notify; here it is logged (there is no GUI VM to tell).
void notify_if_needed(const Decision& decision, const SystemInfo* system);

} // namespace qrexec::policy
