// The policy tap: qrexec-daemons ask it instead of the policy daemon; it passes
// each request to the real policy daemon unchanged, passes the answer back
// unchanged, then records the decision (and the deciding rule) in the call log.
// So calls made without `qrexec-lab call` (e.g. from `qrexec-lab shell`) are
// logged too. If the policy daemon is unreachable the tap closes without an
// answer, and the daemon falls back to qrexec-policy-exec, as it would anyway.
#pragma once

#include "lab/state.h"

#include <string>

namespace qrexec::lab {

// "allow:vault by <how>" for the latest ask answered for source/service since
// `since` (asks.log, written by the ask helper); "" if none.
std::string ask_answer_since(const StatePaths& paths, const std::string& source,
                             const std::string& service, double since);

// Serves one connection (blocking); run in a child process of the supervisor.
void serve_policy_request(int conn, const LabState& state, const StatePaths& paths);

} // namespace qrexec::lab
