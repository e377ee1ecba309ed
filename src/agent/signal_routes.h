// SIGUSR1 routing for calls served inside the agent's own process (AGENT.md §6,
// SEED-BEHAVIOURS.md S5). A service switches its call to single-socket mode by
// sending SIGUSR1 to $QREXEC_AGENT_PID; with no per-call handler process that
// pid is the agent's, so the agent must find out which call the sender belongs to.
//
// Rule: the sender's pid (signalfd's ssi_pid) is looked up among the services
// of the running calls; if it is none of them, its parents are walked through
// /proc/<pid>/stat up to kMaxAncestorLevels levels (a service's child, e.g. an
// external /bin/kill, still alive or not yet reaped). The first service found
// gets the signal; a sender that matches no call is logged and ignored.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

namespace qrexec::agent {

// The parent pid of `pid` read from <proc_root>/<pid>/stat, or nullopt when the
// process is gone or the file does not parse.
std::optional<pid_t> parent_pid(pid_t pid, const std::string& proc_root = "/proc");

class ServiceSignalRoutes {
  public:
    static constexpr int kMaxAncestorLevels = 8;

    // Spawns a call's service and registers it under one lock, so a signal the
    // new service sends at once is routed only after its pid is known.
    // `event_fd` gets one eventfd increment per routed signal.
    // Spawns of different calls run concurrently (shared side of the gate);
    // routing takes the gate exclusively.
    template <typename Spawn> auto spawn_and_add(int event_fd, Spawn&& spawn) {
        std::shared_lock gate(gate_);
        auto child = spawn();
        if (child.pid() > 0) {
            std::lock_guard lock(mutex_);
            routes_[child.pid()] = event_fd;
        }
        return child;
    }
    // Every service registered with this eventfd; before the eventfd is closed.
    void remove_event_fd(int event_fd);

    // The eventfd of the call that `sender` belongs to (see the rule above), or
    // -1. Used by the thread that reads the signals; bounded work per signal.
    int find(pid_t sender, const std::string& proc_root = "/proc");
    // find() and an increment of the call's eventfd; false when nothing matched.
    bool route(pid_t sender);
    // Reads every SIGUSR1 pending on `signal_fd` (nonblocking signalfd) and routes
    // it; returns the senders that matched no call. Any thread may call it: a
    // call about to end its output calls it so that a signal its service sent
    // before closing that output is not still on its way (the read and the
    // routing happen under one lock, so once it returns, every signal sent
    // before the call is in its eventfd).
    std::vector<pid_t> drain(int signal_fd);

    size_t size();

  private:
    int find_locked(pid_t sender, const std::string& proc_root) const;
    bool route_locked(pid_t sender);

    std::shared_mutex gate_;
    std::mutex mutex_;
    std::map<pid_t, int> routes_; // service pid -> its call's eventfd
};

} // namespace qrexec::agent
