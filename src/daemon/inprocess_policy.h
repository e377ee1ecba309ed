// qrexec-daemon --policy-in-process: the policy engine (src/policy) runs inside
// the daemon instead of behind policy.sock or qrexec-policy-exec. The loaded
// policy (and a system-info file) is the policy room's PolicyCache, reloaded
// from inotify events delivered by the daemon's own event loop (no threads). Evaluations keep the
// snapshots they started with, so a reload never changes a request in flight.
// The result is the §5.3 reply text, which the request then runs through the
// same strict parser as a policy daemon or program answer.
#pragma once

#include "daemon/async.h"
#include "daemon/policy_client.h"
#include "io/event_loop.h"
#include "io/fd.h"
#include "policy/cache.h"
#include "policy/engine.h"
#include "policy_server/ask.h"
#include "qubesd/client.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace qrexec::daemon {

struct InProcessConfig {
    policy::PolicyPaths paths;
    std::string system_info_file; // "" = ask qubesd for every request
    std::string qubesd_socket;    // internal.GetSystemInfo
    std::string ask_command;      // "" = an `ask` is denied
    std::chrono::milliseconds ask_timeout = policy::kAskTimeout;

    // QREXEC_POLICY_DIR / QREXEC_LEGACY_POLICY_DIR, QREXEC_SYSTEM_INFO,
    // QREXEC_QUBESD_INTERNAL_SOCKET, QREXEC_ASK_COMMAND (as qrexec-policy-exec).
    static InProcessConfig from_env();
};

// The engine's request for a daemon policy query (same fields as policy.sock).
policy::Request engine_request(const PolicyQuery& query);

// Where a decision came from, for the log: "file:line", the file:line of a
// policy load error, or "no rule".
std::string decision_location(const policy::Decision& decision, const policy::Policy& policy);

// The policy room's cache (policy::PolicyCache), watched from the daemon's event
// loop, plus the settings only the in-process evaluation needs (qubesd socket,
// ask command).
class InProcessPolicy {
  public:
    // Loads everything at once (a load error is logged and denies every call).
    InProcessPolicy(io::EventLoop& loop, InProcessConfig config);
    InProcessPolicy(const InProcessPolicy&) = delete;
    InProcessPolicy& operator=(const InProcessPolicy&) = delete;
    ~InProcessPolicy();

    const InProcessConfig& config() const { return config_; }
    const policy::PolicyCache& cache() const { return cache_; }
    std::shared_ptr<const policy::Policy> policy() const { return cache_.policy(); }
    // File mode: the cached snapshot, or nullptr with *error. Never used in qubesd mode.
    std::shared_ptr<const policy::SystemInfo> system_info(std::string* error) const {
        return cache_.system_info(error);
    }
    bool system_info_from_qubesd() const { return cache_.system_info_from_qubesd(); }
    // Counts policy loads (the first load is 1); logged with each reload.
    uint64_t generation() const { return cache_.generation(); }

  private:
    InProcessConfig config_;
    policy::PolicyCache cache_;
    Watch watch_;
};

// One request's evaluation: [system info from qubesd] -> evaluate -> [ask
// command] -> done(reply text). Logs the decision with its file:line.
// run() may call done() before it returns; destroying the object cancels
// whatever is still running (the ask command is killed).
class PolicyEvaluation {
  public:
    using Done = std::function<void(std::string reply)>;

    PolicyEvaluation(io::EventLoop& loop, const InProcessPolicy& cache, const PolicyQuery& query,
                     std::string what, Done done);
    PolicyEvaluation(const PolicyEvaluation&) = delete;
    PolicyEvaluation& operator=(const PolicyEvaluation&) = delete;
    ~PolicyEvaluation();

    void run();

  private:
    void on_system_info(qubesd::Reply reply);
    void evaluate();
    void on_ask_answer(std::optional<std::string> choice);
    void finish(const policy::Decision& decision, const char* how);

    io::EventLoop& loop_;
    const InProcessPolicy& cache_;
    policy::Request request_;
    std::string what_; // the request, for log lines
    Done done_;
    std::shared_ptr<const policy::Policy> policy_;     // snapshot at arrival
    std::shared_ptr<const policy::SystemInfo> system_; // snapshot used to evaluate
    std::unique_ptr<qubesd::Call> qubesd_call_;
    std::optional<policy::Decision> pending_ask_;
    std::unique_ptr<policy::AskProcess> ask_;
    bool finished_ = false;
};

} // namespace qrexec::daemon
