#include "policy/cache.h"

#include "io/log.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qrexec::policy {

namespace {

// IN_MODIFY and IN_CREATE only mark a file as being written; the reload waits for
// its IN_CLOSE_WRITE (or an atomic IN_MOVED_TO).
constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

// A load that keeps meeting fresh changes is given up after this many tries; the next
// event starts again (the old snapshot stays in use meanwhile).
constexpr int kMaxLoadAttempts = 8;
constexpr int kMaxEventReads = 64;

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_directory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Editor swap and backup files are written while the editor runs; they are never
// policy (§1, §9), so their writes must not hold a reload back.
bool may_be_policy_name(const std::string& name) {
    return !name.empty() && name[0] != '.' && !name.ends_with(".swp") && !name.ends_with("~");
}

// A new regular file with one link is being written by whoever created it; a symlink or
// a hard link to an existing file is complete when it appears.
bool created_by_a_writer(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
}

// Reads files under a read lease (fcntl F_SETLEASE): the lease cannot be taken while
// anyone has the file open for writing, and while it is held a writer's open() waits
// until it is released. So a file is either read whole, between two writers, or not
// at all ("busy"). Inotify alone cannot promise that: a truncate or write changes the
// data a moment before its event is queued. Where leases are not available (not the
// file's owner without CAP_LEASE, a file system without leases) the read is plain and
// the inotify checks are what is left.
class LeasedLoader final : public Loader {
  public:
    PathKind kind(const std::string& path) const override { return fs_.kind(path); }
    std::optional<std::vector<std::string>> list_dir(const std::string& path,
                                                     std::string* error) const override {
        return fs_.list_dir(path, error);
    }
    std::optional<std::string> read_file(const std::string& path,
                                         std::string* error) const override {
        io::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) {
            // (a symlink or a failure: the plain reader reports it the usual way)
            return fs_.read_file(path, error);
        }
        if (::fcntl(fd.get(), F_SETLEASE, F_RDLCK) != 0) {
            if (errno == EAGAIN) {
                busy_ = true; // open for writing right now
                if (error) *error = "file " + path + " is being written";
                return std::nullopt;
            }
            return fs_.read_file(path, error);
        }
        auto text = fs_.read_file(path, error);
        ::fcntl(fd.get(), F_SETLEASE, F_UNLCK);
        return text;
    }
    bool busy() const { return busy_; }

  private:
    FsLoader fs_;
    mutable bool busy_ = false;
};

} // namespace

PolicyCache::PolicyCache(CacheConfig config) : config_(std::move(config)) {
    if (!config_.system_info_file.empty()) {
        system_dir_ = parent_dir(config_.system_info_file);
        system_base_ = base_name(config_.system_info_file);
    }
    if (config_.watch) {
        // A writer opening a file we hold a read lease on makes the kernel send SIGIO
        // (default action: terminate); the lease is released right after reading, so
        // the signal itself is not needed.
        ::signal(SIGIO, SIG_IGN);
        // Watching starts before the first load, so no change can fall in between.
        inotify_ = io::Fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (!inotify_) QLOG_ERRNO("inotify_init1 failed (policy changes will not be noticed)");
    }
    reload_policy();
    if (!system_info_from_qubesd()) reload_system_info();
}

std::shared_ptr<const SystemInfo> PolicyCache::system_info(std::string* error) const {
    if (!system_ && error) *error = system_error_;
    return system_;
}

std::shared_ptr<const SystemInfo> PolicyCache::fetch_system_info(std::string* error) const {
    if (!system_info_from_qubesd()) return system_info(error);
    auto info = fetch_system_info_qubesd(config_.qubesd_socket, error);
    if (!info) return nullptr;
    return std::make_shared<const SystemInfo>(std::move(*info));
}

std::shared_ptr<const Policy> PolicyCache::load() const {
    LeasedLoader loader;
    auto policy = std::make_shared<const Policy>(load_policy(loader, config_.paths));
    if (loader.busy()) return nullptr;
    return policy;
}

void PolicyCache::install(std::shared_ptr<const Policy> fresh) {
    ++generation_;
    if (config_.log) {
        for (const auto& warning : fresh->warnings)
            QLOG("policy warning: {}", warning);
        if (fresh->ok())
            QLOG("policy loaded (generation {}): {} rules from {} files", generation_,
                 fresh->rules.size(), fresh->files.size());
        else
            // The error text starts with file:line when there is one.
            QLOG("error loading policy (generation {}): {} (every call will be denied{})",
                 generation_, *fresh->error,
                 last_good_ ? "; the last good policy is kept for reference only" : "");
    }
    if (fresh->ok()) last_good_ = fresh;
    policy_ = std::move(fresh);
    update_watches();
}

void PolicyCache::reload_policy() {
    policy_changed_ = false;
    auto fresh = load();
    if (!fresh) {
        // A file is open for writing: its IN_CLOSE_WRITE brings the next attempt.
        policy_changed_ = true;
        if (!policy_) {
            // Nothing to keep: read it as it is rather than start without a policy.
            FsLoader plain;
            fresh = std::make_shared<const Policy>(load_policy(plain, config_.paths));
        } else {
            return;
        }
    }
    install(std::move(fresh));
}

void PolicyCache::reload_system_info() {
    system_changed_ = false;
    std::string error;
    auto info = load_system_info_file(config_.system_info_file, &error);
    if (!info) {
        system_.reset();
        system_error_ = error.empty() ? "cannot read " + config_.system_info_file : error;
        if (config_.log)
            QLOG("cannot load system info from {}: {} (every call will be denied)",
                 config_.system_info_file, system_error_);
    } else {
        system_ = std::make_shared<const SystemInfo>(std::move(*info));
        system_error_.clear();
        if (config_.log)
            QLOG("system info loaded from {}: {} domains", config_.system_info_file,
                 system_->domains().size());
    }
    update_watches();
}

void PolicyCache::update_watches() {
    if (!inotify_) return;
    // Policy: the policy directories, the legacy directory and every directory a
    // file was read from (includes), any entry; for a missing policy directory,
    // its parent, that entry only (its creation). System info: the file's
    // directory, that entry only (the file may be replaced by a rename).
    std::map<std::string, WatchUse> wanted;
    for (const auto& dir : config_.paths.dirs) {
        if (is_directory(dir))
            wanted[dir].policy_any = true;
        else
            wanted[parent_dir(dir)].policy_names.insert(base_name(dir));
    }
    const std::string& legacy = config_.paths.legacy_dir;
    if (is_directory(legacy))
        wanted[legacy].policy_any = true;
    else
        wanted[parent_dir(legacy)].policy_names.insert(base_name(legacy));
    if (policy_)
        for (const auto& file : policy_->files)
            wanted[parent_dir(file)].policy_any = true;
    if (!system_dir_.empty()) wanted[system_dir_].system = true;

    std::map<std::string, int> added;
    std::map<int, WatchUse> uses;
    for (const auto& [path, use] : wanted) {
        int wd = ::inotify_add_watch(inotify_.get(), path.c_str(), kWatchMask);
        if (wd < 0) continue;
        added[path] = wd;
        // Two paths may be the same directory (same wd): merge their uses.
        auto& merged = uses[wd];
        merged.policy_any = merged.policy_any || use.policy_any;
        merged.policy_names.insert(use.policy_names.begin(), use.policy_names.end());
        merged.system = merged.system || use.system;
    }
    // Drop watches nobody needs any more (e.g. the parent of a policy directory
    // that now exists).
    for (const auto& [path, wd] : watches_)
        if (!uses.count(wd)) ::inotify_rm_watch(inotify_.get(), wd);
    watches_ = std::move(added);
    uses_ = std::move(uses);
}

void PolicyCache::note_event(int wd, uint32_t mask, const std::string& name, Events& out) {
    auto use_it = uses_.find(wd);
    if (use_it == uses_.end()) return;
    const WatchUse& use = use_it->second;
    bool is_system = use.system && name == system_base_;
    bool is_policy = (use.policy_any || use.policy_names.count(name) || name.empty()) && !is_system;
    if (!is_system && !is_policy) return;
    auto key = std::make_pair(wd, name);
    bool tracked = !name.empty() && may_be_policy_name(name) && !(mask & IN_ISDIR);
    // A change, but not a complete one: settle() waits for its IN_CLOSE_WRITE.
    if ((mask & IN_MODIFY) && tracked) being_written_.insert(key);
    if ((mask & IN_CREATE) && tracked) {
        std::string dir;
        for (const auto& [path, w] : watches_)
            if (w == wd) dir = path;
        if (!dir.empty() && created_by_a_writer(dir + "/" + name)) being_written_.insert(key);
    }
    if (mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
        being_written_.erase(key);
    (is_system ? out.system : out.policy) = true;
}

PolicyCache::Events PolicyCache::read_events() {
    Events out;
    if (!inotify_) return out;
    alignas(inotify_event) char buffer[16384];
    // Bounded: a directory written to without pause (a log next to the system-info
    // file) must not keep the event loop here; what is left wakes the loop again.
    for (int reads = 0; reads < kMaxEventReads; ++reads) {
        ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
            const auto* event = reinterpret_cast<const inotify_event*>(buffer + off);
            off += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
            if (event->mask & IN_Q_OVERFLOW) {
                // Events were lost: what is being written is unknown, reload everything.
                being_written_.clear();
                out.policy = out.system = true;
                continue;
            }
            // Removed watches (ours, or of a deleted directory, which also reported
            // IN_DELETE_SELF) need no action.
            if (event->mask & IN_IGNORED) continue;
            std::string name = event->len ? std::string(event->name) : std::string();
            note_event(event->wd, event->mask, name, out);
        }
    }
    return out;
}

void PolicyCache::on_watch_readable() {
    Events events = read_events();
    policy_changed_ = policy_changed_ || events.policy;
    system_changed_ = system_changed_ || events.system;
    settle();
}

void PolicyCache::settle() {
    for (int attempt = 0; attempt < kMaxLoadAttempts; ++attempt) {
        bool writing_system = false, writing_policy = false;
        for (const auto& [wd, name] : being_written_) {
            auto use = uses_.find(wd);
            bool system = use != uses_.end() && use->second.system && name == system_base_;
            (system ? writing_system : writing_policy) = true;
        }
        if (system_changed_ && !writing_system && !system_info_from_qubesd()) {
            system_changed_ = false;
            reload_system_info();
        }
        if (!policy_changed_ || writing_policy) return;
        auto fresh = load();
        // Anything that happened while the files were read may have been read half-way:
        // throw the load away and start again once the writers are done.
        Events during = read_events();
        system_changed_ = system_changed_ || during.system;
        if (during.policy) continue;
        // A file open for writing: wait for its IN_CLOSE_WRITE.
        if (!fresh) return;
        policy_changed_ = false;
        install(std::move(fresh));
        // (the next round reloads a system-info file that changed meanwhile)
    }
}

} // namespace qrexec::policy
