#include "agent/signal_routes.h"

#include <fcntl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qrexec::agent {

std::optional<pid_t> parent_pid(pid_t pid, const std::string& proc_root) {
    if (pid <= 0) return std::nullopt;
    std::ifstream file(proc_root + "/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!file || !std::getline(file, text)) return std::nullopt;
    // "pid (comm) state ppid ...": comm may itself contain ") ", so the last one counts.
    auto close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream rest(text.substr(close + 1));
    std::string state;
    long ppid = -1;
    if (!(rest >> state >> ppid) || ppid < 0) return std::nullopt;
    return static_cast<pid_t>(ppid);
}

void ServiceSignalRoutes::remove_event_fd(int event_fd) {
    std::lock_guard lock(mutex_);
    std::erase_if(routes_, [event_fd](const auto& route) { return route.second == event_fd; });
}

size_t ServiceSignalRoutes::size() {
    std::lock_guard lock(mutex_);
    return routes_.size();
}

int ServiceSignalRoutes::find_locked(pid_t sender, const std::string& proc_root) const {
    pid_t pid = sender;
    for (int level = 0; level <= kMaxAncestorLevels && pid > 1 && !routes_.empty(); ++level) {
        if (auto it = routes_.find(pid); it != routes_.end()) return it->second;
        auto parent = parent_pid(pid, proc_root);
        if (!parent) break;
        pid = *parent;
    }
    return -1;
}

int ServiceSignalRoutes::find(pid_t sender, const std::string& proc_root) {
    std::lock_guard lock(mutex_);
    return find_locked(sender, proc_root);
}

bool ServiceSignalRoutes::route_locked(pid_t sender) {
    int fd = find_locked(sender, "/proc");
    if (fd < 0) return false;
    uint64_t one = 1;
    // The eventfd stays open while its service is registered (remove_event_fd()
    // comes first); a full counter (EAGAIN) already means "switch".
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
    return true;
}

bool ServiceSignalRoutes::route(pid_t sender) {
    std::unique_lock gate(gate_); // no spawn in flight: every running service is registered
    std::lock_guard lock(mutex_);
    return route_locked(sender);
}

std::vector<pid_t> ServiceSignalRoutes::drain(int signal_fd) {
    std::unique_lock gate(gate_);
    std::lock_guard lock(mutex_);
    std::vector<pid_t> unmatched;
    signalfd_siginfo info{};
    while (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        auto sender = static_cast<pid_t>(info.ssi_pid);
        if (!route_locked(sender)) unmatched.push_back(sender);
    }
    return unmatched;
}

} // namespace qrexec::agent
