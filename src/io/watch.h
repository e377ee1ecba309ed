// RAII helpers for one io::EventLoop: an fd watch that ends with its owner, a
// one-shot timer cancelled when destroyed, and a reaper for children nobody
// waits for any more.
#pragma once

#include "io/event_loop.h"
#include "io/process.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace qrexec::io {

// Watches an fd for as long as it lives.
class Watch {
  public:
    Watch() = default;
    Watch(EventLoop& loop, int fd, uint32_t events, EventLoop::FdHandler handler);
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    Watch(Watch&& other) noexcept;
    Watch& operator=(Watch&& other) noexcept;
    ~Watch() { reset(); }
    void modify(uint32_t events);
    void reset();
    bool active() const { return loop_ != nullptr; }

  private:
    EventLoop* loop_ = nullptr;
    int fd_ = -1;
};

// A one-shot timer, cancelled when destroyed.
class Timer {
  public:
    explicit Timer(EventLoop& loop) : loop_(&loop) {}
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    ~Timer() { cancel(); }
    void start(std::chrono::milliseconds delay, std::function<void()> handler);
    void cancel();
    bool armed() const { return id_ != 0; }

  private:
    EventLoop* loop_;
    EventLoop::TimerId id_ = 0;
};

// Reaps children nobody waits for any more (via their pidfds). A condemned
// child (terminate()) gets SIGTERM and SIGCONT (a stopped program must still
// die), then SIGKILL once `grace` has passed; condemned children still there
// when the reaper is destroyed are killed, others are left alone (never block
// on them).
class Reaper {
  public:
    explicit Reaper(EventLoop& loop,
                    std::chrono::milliseconds grace = std::chrono::milliseconds(2000))
        : loop_(loop), grace_(grace) {}
    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;
    ~Reaper();
    void adopt(Child child, std::string what);
    void terminate(Child child, std::string what);
    size_t size() const { return children_.size(); }

  private:
    struct Entry {
        Child child;
        std::string what;
        Watch watch;
        std::unique_ptr<Timer> kill_timer; // set for condemned children
    };
    Entry* add(Child child, std::string what);
    void check(pid_t pid);
    void kill_now(pid_t pid);
    EventLoop& loop_;
    std::chrono::milliseconds grace_;
    std::map<pid_t, std::unique_ptr<Entry>> children_;
};

} // namespace qrexec::io
