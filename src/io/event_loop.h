// Single-threaded epoll loop with fd watches and one-shot timers.
#pragma once

#include "io/fd.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

namespace qrexec::io {

using Clock = std::chrono::steady_clock;

class EventLoop {
public:
    // Called with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLHUP, ...).
    using FdHandler = std::function<void(uint32_t events)>;
    using TimerHandler = std::function<void()>;
    using TimerId = uint64_t;

    EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    void watch(int fd, uint32_t events, FdHandler handler);
    // Like watch, but returns false (errno set) when epoll refuses the fd, e.g. EPERM
    // for regular files, which are always ready.
    bool try_watch(int fd, uint32_t events, FdHandler handler);
    void modify(int fd, uint32_t events);
    void unwatch(int fd);
    bool watching(int fd) const { return handlers_.count(fd) != 0; }

    TimerId add_timer(std::chrono::milliseconds delay, TimerHandler handler);
    void cancel_timer(TimerId id);

    // Waits up to max_wait (or until the next timer) and dispatches; returns events handled.
    int run_once(std::chrono::milliseconds max_wait = std::chrono::milliseconds(-1));
    void run() {
        while (!stopped_) run_once();
    }
    void stop() { stopped_ = true; }
    bool stopped() const { return stopped_; }

private:
    Fd epoll_;
    bool stopped_ = false;
    // shared_ptr so a handler that unwatches itself stays alive while running.
    std::unordered_map<int, std::shared_ptr<FdHandler>> handlers_;
    std::multimap<Clock::time_point, std::pair<TimerId, TimerHandler>> timers_;
    TimerId next_timer_ = 1;
};

// A signalfd for the given signals; the signals are blocked in the calling thread.
// Children must unblock them (see io/process.h, which resets the mask).
Fd make_signal_fd(std::initializer_list<int> signals);
// Drains a signalfd; returns the signals read.
std::vector<int> read_signals(int signal_fd);

} // namespace qrexec::io
