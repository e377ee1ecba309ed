#include "daemon/inprocess_policy.h"

#include "io/log.h"

#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <utility>

namespace qrexec::daemon {

namespace {

// Upper bound on qubesd's internal.GetSystemInfo reply (a JSON of every VM).
constexpr size_t kMaxSystemInfoReply = 64 * 1024 * 1024;

// No IN_MODIFY: a file being written is picked up at IN_CLOSE_WRITE (or at the
// IN_MOVED_TO of an atomic rename), so a half-written file is not parsed.
constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

std::string parent_dir(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_directory(const std::string& path) {
    return policy::FsLoader{}.kind(path) == policy::PathKind::Directory;
}

const char* outcome_name(policy::Outcome outcome) {
    switch (outcome) {
    case policy::Outcome::Allow:
        return "allow";
    case policy::Outcome::Deny:
        return "deny";
    case policy::Outcome::Ask:
        return "ask";
    }
    return "?";
}

} // namespace

InProcessConfig InProcessConfig::from_env() {
    InProcessConfig config;
    config.paths = policy::PolicyPaths::from_env();
    if (const char* file = std::getenv("QREXEC_SYSTEM_INFO"); file && *file)
        config.system_info_file = file;
    const char* qubesd = std::getenv("QREXEC_QUBESD_INTERNAL_SOCKET");
    config.qubesd_socket = qubesd && *qubesd ? qubesd : policy::kQubesdInternalSocket;
    config.ask_command = policy::ask_command_from_env();
    return config;
}

policy::Request engine_request(const PolicyQuery& query) {
    policy::Request request;
    request.source = query.source;
    request.intended_target = query.intended_target;
    request.service_and_arg = query.service_and_arg;
    request.requested_source = query.requested_source.value_or("");
    return request;
}

std::string decision_location(const policy::Decision& decision, const policy::Policy& policy) {
    if (decision.rule) return decision.rule->str();
    if (!policy.ok() && policy.error_location) return policy.error_location->str();
    return "no rule";
}

// ---- PolicyCache -------------------------------------------------------------

PolicyCache::PolicyCache(io::EventLoop& loop, InProcessConfig config)
    : loop_(loop), config_(std::move(config)) {
    if (!config_.system_info_file.empty()) {
        system_dir_ = parent_dir(config_.system_info_file);
        system_base_ = base_name(config_.system_info_file);
    }
    inotify_ = io::Fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (inotify_)
        inotify_watch_ = Watch(loop_, inotify_.get(), EPOLLIN, [this](uint32_t) { on_inotify(); });
    else
        QLOG_ERRNO("inotify_init1 failed (policy changes will not be noticed)");
    reload_policy();
    if (!system_info_from_qubesd()) reload_system_info();
}

PolicyCache::~PolicyCache() {
    inotify_watch_.reset();
}

std::shared_ptr<const policy::SystemInfo> PolicyCache::system_info(std::string* error) const {
    if (!system_ && error) *error = system_error_;
    return system_;
}

void PolicyCache::reload_policy() {
    auto fresh = policy::load_policy_shared(loader_, config_.paths);
    ++generation_;
    for (const auto& warning : fresh->warnings)
        QLOG("policy warning: {}", warning);
    if (fresh->ok()) {
        QLOG("policy loaded (generation {}): {} rules from {} files", generation_,
             fresh->rules.size(), fresh->files.size());
    } else {
        // The error text starts with file:line when there is one.
        QLOG("error loading policy (generation {}): {} (every call will be denied)", generation_,
             *fresh->error);
    }
    policy_ = std::move(fresh);
    update_watches();
}

void PolicyCache::reload_system_info() {
    std::string error;
    auto info = policy::load_system_info_file(config_.system_info_file, &error);
    if (!info) {
        system_.reset();
        system_error_ = error.empty() ? "cannot read " + config_.system_info_file : error;
        QLOG("cannot load system info from {}: {} (every call will be denied)",
             config_.system_info_file, system_error_);
    } else {
        system_ = std::make_shared<const policy::SystemInfo>(std::move(*info));
        system_error_.clear();
        QLOG("system info loaded from {}: {} domains", config_.system_info_file,
             system_->domains().size());
    }
    update_watches();
}

void PolicyCache::update_watches() {
    if (!inotify_) return;
    // What each watched directory is for. Policy: the policy directories, the
    // legacy directory and every directory a file was read from (includes),
    // any entry; for a missing policy directory, its parent, that entry only
    // (its creation). System info: the file's directory, that entry only (the
    // file may be replaced by a rename).
    std::map<std::string, WatchUse> wanted;
    for (const auto& dir : config_.paths.dirs) {
        if (is_directory(dir))
            wanted[dir].policy_any = true;
        else
            wanted[parent_dir(dir)].policy_names.insert(base_name(dir));
    }
    if (is_directory(config_.paths.legacy_dir)) wanted[config_.paths.legacy_dir].policy_any = true;
    if (policy_)
        for (const auto& file : policy_->files)
            wanted[parent_dir(file)].policy_any = true;
    if (!system_dir_.empty()) wanted[system_dir_].system = true;

    std::map<std::string, int> added;
    uses_.clear();
    for (const auto& [path, use] : wanted) {
        int wd = ::inotify_add_watch(inotify_.get(), path.c_str(), kWatchMask);
        if (wd < 0) continue;
        added[path] = wd;
        // Two paths may be the same directory (same wd): merge their uses.
        auto& merged = uses_[wd];
        merged.policy_any = merged.policy_any || use.policy_any;
        merged.policy_names.insert(use.policy_names.begin(), use.policy_names.end());
        merged.system = merged.system || use.system;
    }
    // Drop watches nobody needs any more (e.g. the parent of a policy
    // directory that now exists).
    for (const auto& [path, wd] : watches_)
        if (!uses_.count(wd)) ::inotify_rm_watch(inotify_.get(), wd);
    watches_ = std::move(added);
}

void PolicyCache::on_inotify() {
    alignas(inotify_event) char buffer[16384];
    bool policy_changed = false;
    bool system_changed = false;
    for (;;) {
        ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
            const auto* event = reinterpret_cast<const inotify_event*>(buffer + off);
            off += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
            if (event->mask & IN_Q_OVERFLOW) {
                policy_changed = system_changed = true;
                continue;
            }
            // Removed watches (ours, or of a deleted directory, which also
            // reported IN_DELETE_SELF) need no action.
            if (event->mask & IN_IGNORED) continue;
            auto use = uses_.find(event->wd);
            if (use == uses_.end()) continue;
            std::string name = event->len ? std::string(event->name) : std::string();
            if (use->second.system && (name == system_base_ || name.empty())) {
                system_changed = true;
                // A system-info file next to the policy files is no policy change.
                if (!name.empty()) continue;
            }
            if (use->second.policy_any || use->second.policy_names.count(name))
                policy_changed = true;
        }
    }
    if (policy_changed) reload_policy();
    if (system_changed && !system_info_from_qubesd()) reload_system_info();
}

// ---- PolicyEvaluation ----------------------------------------------------------

PolicyEvaluation::PolicyEvaluation(io::EventLoop& loop, const PolicyCache& cache,
                                   const PolicyQuery& query, std::string what, Done done)
    : loop_(loop), cache_(cache), request_(engine_request(query)), what_(std::move(what)),
      done_(std::move(done)), policy_(cache.policy()) {}

PolicyEvaluation::~PolicyEvaluation() = default;

void PolicyEvaluation::run() {
    if (!cache_.system_info_from_qubesd()) {
        std::string error;
        system_ = cache_.system_info(&error);
        if (!system_) {
            finish(policy::deny_without_system_info(request_, error), "");
            return;
        }
        evaluate();
        return;
    }
    exchange_ = std::make_unique<UnixExchange>(
        loop_, cache_.config().qubesd_socket,
        qubesd_request("internal.GetSystemInfo", "", "dom0", ""), true, kMaxSystemInfoReply,
        [this](UnixExchange::Result result) { on_system_info(std::move(result)); });
}

void PolicyEvaluation::on_system_info(UnixExchange::Result result) {
    const std::string& socket = cache_.config().qubesd_socket;
    std::string error;
    if (result.outcome != UnixExchange::Outcome::Reply) {
        error = "qubesd call internal.GetSystemInfo via " + socket + " failed: " +
                (result.outcome == UnixExchange::Outcome::TooLong ? std::string("reply too long")
                                                                  : io::errno_text(result.error));
    } else if (auto reply = parse_qubesd_reply(result.reply); !reply.ok) {
        error = "internal.GetSystemInfo failed: " + reply.exception_type;
    } else if (auto info = policy::parse_system_info(reply.value, &error)) {
        system_ = std::make_shared<const policy::SystemInfo>(std::move(*info));
    }
    if (!system_) {
        finish(policy::deny_without_system_info(request_, error), "");
        return;
    }
    evaluate();
}

void PolicyEvaluation::evaluate() {
    policy::Decision decision = policy::evaluate(*policy_, *system_, request_);
    if (decision.outcome != policy::Outcome::Ask) {
        finish(decision, "");
        return;
    }
    const std::string& command = cache_.config().ask_command;
    QLOG("{}: policy ask at {}; {}", what_, decision_location(decision, *policy_),
         command.empty() ? "no ask command configured, denying" : "running the ask command");
    if (command.empty()) {
        finish(policy::answer_ask(decision, *system_, std::nullopt), "ask: ");
        return;
    }
    pending_ask_ = std::move(decision);
    try {
        ask_ = std::make_unique<policy::AskProcess>(
            loop_, command, *pending_ask_->ask, *system_,
            [this](std::optional<std::string> choice) { on_ask_answer(std::move(choice)); },
            cache_.config().ask_timeout);
    } catch (const std::exception& e) {
        QLOG("{}: cannot run the ask command: {}", what_, e.what());
        finish(policy::answer_ask(*pending_ask_, *system_, std::nullopt), "ask: ");
    }
}

void PolicyEvaluation::on_ask_answer(std::optional<std::string> choice) {
    // Called from the AskProcess, which therefore stays alive until we are destroyed.
    finish(policy::answer_ask(*pending_ask_, *system_, choice), "ask: ");
}

void PolicyEvaluation::finish(const policy::Decision& decision, const char* how) {
    if (finished_) return;
    finished_ = true;
    std::string where = decision_location(decision, *policy_);
    // "allowed by policy FILE:LINE" says nothing more than the location.
    bool redundant = decision.reason.empty() || (decision.rule && decision.reason.ends_with(where));
    QLOG("{}: {}policy {} at {}{}", what_, how, outcome_name(decision.outcome), where,
         redundant ? std::string() : " (" + decision.reason + ")");
    // done_ may end the request (never destroys us synchronously).
    done_(decision.answer);
}

} // namespace qrexec::daemon
