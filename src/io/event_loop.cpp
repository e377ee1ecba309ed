#include "io/event_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

namespace qrexec::io {

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

void EventLoop::watch(int fd, uint32_t events, FdHandler handler) {
    if (!try_watch(fd, events, std::move(handler)))
        throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

bool EventLoop::try_watch(int fd, uint32_t events, FdHandler handler) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    int op = handlers_.count(fd) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epoll_.get(), op, fd, &ev) != 0) return false;
    handlers_[fd] = std::make_shared<FdHandler>(std::move(handler));
    return true;
}

void EventLoop::modify(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
        throw std::system_error(errno, std::generic_category(), "epoll_ctl mod");
}

void EventLoop::unwatch(int fd) {
    if (handlers_.erase(fd)) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::add_timer(std::chrono::milliseconds delay, TimerHandler handler) {
    TimerId id = next_timer_++;
    timers_.emplace(Clock::now() + delay, std::make_pair(id, std::move(handler)));
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
        if (it->second.first == id) {
            timers_.erase(it);
            return;
        }
    }
}

int EventLoop::run_once(std::chrono::milliseconds max_wait) {
    int timeout = static_cast<int>(max_wait.count());
    if (!timers_.empty()) {
        auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
                         timers_.begin()->first - Clock::now())
                         .count() +
                     1;
        if (until < 0) until = 0;
        if (timeout < 0 || until < timeout) timeout = static_cast<int>(until);
    }
    epoll_event events[64];
    int n = epoll_wait(epoll_.get(), events, 64, timeout);
    if (n < 0) {
        if (errno == EINTR) return 0;
        throw std::system_error(errno, std::generic_category(), "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
        auto it = handlers_.find(events[i].data.fd);
        if (it == handlers_.end()) continue;
        auto handler = it->second; // keep alive across a self-unwatch
        (*handler)(events[i].events);
    }
    auto now = Clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
        auto handler = std::move(timers_.begin()->second.second);
        timers_.erase(timers_.begin());
        handler();
        ++n;
    }
    return n;
}

Fd make_signal_fd(std::initializer_list<int> signals) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : signals) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
    return Fd(fd);
}

std::vector<int> read_signals(int signal_fd) {
    std::vector<int> result;
    signalfd_siginfo info{};
    while (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info))
        result.push_back(static_cast<int>(info.ssi_signo));
    return result;
}

} // namespace qrexec::io
