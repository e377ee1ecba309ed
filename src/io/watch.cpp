#include "io/watch.h"

#include "io/log.h"

#include <signal.h>
#include <sys/epoll.h>

#include <utility>

namespace qrexec::io {

// ---- Watch / Timer ----------------------------------------------------------

Watch::Watch(EventLoop& loop, int fd, uint32_t events, EventLoop::FdHandler handler)
    : loop_(&loop), fd_(fd) {
    loop.watch(fd, events, std::move(handler));
}

Watch::Watch(Watch&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), fd_(std::exchange(other.fd_, -1)) {}

Watch& Watch::operator=(Watch&& other) noexcept {
    if (this != &other) {
        reset();
        loop_ = std::exchange(other.loop_, nullptr);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void Watch::modify(uint32_t events) {
    if (loop_) loop_->modify(fd_, events);
}

void Watch::reset() {
    if (loop_) loop_->unwatch(fd_);
    loop_ = nullptr;
    fd_ = -1;
}

void Timer::start(std::chrono::milliseconds delay, std::function<void()> handler) {
    cancel();
    id_ = loop_->add_timer(delay, [this, handler = std::move(handler)] {
        id_ = 0;
        handler();
    });
}

void Timer::cancel() {
    if (id_) loop_->cancel_timer(id_);
    id_ = 0;
}

// ---- Reaper -----------------------------------------------------------------

Reaper::~Reaper() {
    for (auto& [pid, entry] : children_) {
        entry->watch.reset();
        if (entry->kill_timer) {
            // Condemned anyway: do not leave it behind (e.g. stopped) on exit.
            ::kill(pid, SIGKILL);
            entry->child.wait();
            continue;
        }
        entry->child.detach(); // never block the owner's exit on a child
    }
}

Reaper::Entry* Reaper::add(Child child, std::string what) {
    if (!child.running() || child.try_wait()) return nullptr;
    pid_t pid = child.pid();
    if (child.exit_fd() < 0) {
        QLOG("cannot watch {} (pid {}), leaving it unreaped", what, pid);
        child.detach();
        return nullptr;
    }
    auto entry = std::make_unique<Entry>(Entry{std::move(child), std::move(what), Watch(), {}});
    entry->watch =
        Watch(loop_, entry->child.exit_fd(), EPOLLIN, [this, pid](uint32_t) { check(pid); });
    auto* raw = entry.get();
    children_[pid] = std::move(entry);
    return raw;
}

void Reaper::adopt(Child child, std::string what) { add(std::move(child), std::move(what)); }

void Reaper::terminate(Child child, std::string what) {
    pid_t pid = child.pid();
    Entry* entry = add(std::move(child), std::move(what));
    if (!entry) return;
    ::kill(pid, SIGTERM);
    ::kill(pid, SIGCONT);
    entry->kill_timer = std::make_unique<Timer>(loop_);
    entry->kill_timer->start(grace_, [this, pid] { kill_now(pid); });
}

void Reaper::kill_now(pid_t pid) {
    auto it = children_.find(pid);
    if (it == children_.end()) return;
    // Still ours (unreaped), so the pid cannot have been reused.
    QLOG("{} (pid {}) ignored SIGTERM for {} ms, killing it", it->second->what, pid,
         grace_.count());
    ::kill(pid, SIGKILL);
}

void Reaper::check(pid_t pid) {
    auto it = children_.find(pid);
    if (it == children_.end()) return;
    if (auto status = it->second->child.try_wait()) {
        if (*status != 0) QLOG("{} (pid {}) exited with status {}", it->second->what, pid, *status);
        children_.erase(it);
    }
}

} // namespace qrexec::io
