// The one policy cache behind every consumer (policy daemon, qrexec-daemon
// --policy-in-process, qrexec-policy-exec, explain, the lab): load, validate,
// swap in one assignment, keep the last good policy next to the load error
// that denies everything (POLICY.md §1), and reload only when a writer is done.
//
// Half-written files: a reload happens only after IN_CLOSE_WRITE / IN_MOVED_TO
// style events, never while a policy file has unfinished writes (IN_MODIFY or
// IN_CREATE without its IN_CLOSE_WRITE yet), and a load during which any watched
// file changed is thrown away and retried. Because O_TRUNC and write(2) queue
// their events before returning, a load that read a file mid-rewrite always sees
// such an event afterwards.
//
// Single-threaded: the owner polls watch_fd() in its event loop and calls
// on_watch_readable(). Readers take policy() / system_info() once per request
// and keep those shared snapshots until the request is answered.
#pragma once

#include "io/fd.h"
#include "policy/engine.h"

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

namespace qrexec::policy {

struct CacheConfig {
    PolicyPaths paths;
    std::string system_info_file; // "" = system info comes from qubesd (not cached)
    std::string qubesd_socket = kQubesdInternalSocket; // internal.GetSystemInfo
    // Watch for changes (inotify; the owner polls watch_fd()). Off for one-shot programs.
    bool watch = false;
    // Log "policy loaded (generation N)…" / "error loading policy (generation N)…".
    bool log = true;
};

class PolicyCache {
  public:
    // Loads the policy (and the system-info file) at once; a failure is recorded, never
    // thrown. With config.watch, inotify watches are set up before the first load.
    explicit PolicyCache(CacheConfig config);
    PolicyCache(const PolicyCache&) = delete;
    PolicyCache& operator=(const PolicyCache&) = delete;

    const CacheConfig& config() const { return config_; }
    // The snapshot to answer a request with (an error in it denies every request).
    std::shared_ptr<const Policy> policy() const { return policy_; }
    // The last policy that loaded without error (nullptr before the first one).
    std::shared_ptr<const Policy> last_good() const { return last_good_; }
    // Counts policy loads that were swapped in (the first load is 1).
    uint64_t generation() const { return generation_; }

    bool system_info_from_qubesd() const { return config_.system_info_file.empty(); }
    // File mode: the cached snapshot, or nullptr with *error.
    std::shared_ptr<const SystemInfo> system_info(std::string* error) const;
    // The system information to evaluate one request with: the cached file, or a
    // (blocking) internal.GetSystemInfo call to qubesd, which cannot be cached (power
    // states change without any event). nullptr with *error on failure.
    std::shared_ptr<const SystemInfo> fetch_system_info(std::string* error) const;

    // Loads now and swaps in the result.
    void reload_policy();
    void reload_system_info();

    // The inotify fd to poll (-1 when not watching or inotify is unavailable, which is
    // logged: the cache then stays as loaded). It watches the policy directories, the
    // legacy and include directories and the system-info file's directory.
    int watch_fd() const { return inotify_ ? inotify_.get() : -1; }
    // Reads the pending change events and reloads what is complete.
    void on_watch_readable();
    // True while a change is known but not loaded yet (a file is still being written).
    bool reload_pending() const { return policy_changed_ || system_changed_; }

  private:
    struct WatchUse {
        bool policy_any = false;            // any entry changes the policy
        std::set<std::string> policy_names; // only these entries do
        bool system = false;                // the system-info file's directory
    };
    // What a batch of events said.
    struct Events {
        bool policy = false;
        bool system = false;
    };

    Events read_events();
    void note_event(int wd, uint32_t mask, const std::string& name, Events& out);
    void settle();
    std::shared_ptr<const Policy> load() const;
    void install(std::shared_ptr<const Policy> fresh);
    void update_watches();

    CacheConfig config_;
    std::shared_ptr<const Policy> policy_;
    std::shared_ptr<const Policy> last_good_;
    std::shared_ptr<const SystemInfo> system_;
    std::string system_error_;
    uint64_t generation_ = 0;

    io::Fd inotify_;
    std::map<std::string, int> watches_; // watched path -> wd
    std::map<int, WatchUse> uses_;       // wd -> what its events mean
    std::string system_dir_, system_base_;
    // Files with writes whose IN_CLOSE_WRITE has not arrived yet.
    std::set<std::pair<int, std::string>> being_written_;
    bool policy_changed_ = false;
    bool system_changed_ = false;
};

} // namespace qrexec::policy
