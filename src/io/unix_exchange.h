// "Connect, send a request, read the reply to EOF" over a UNIX stream socket,
// driven by an io::EventLoop (the policy daemon's socket, qubesd). The
// completion is delivered from the loop, never from the constructor, and never
// after the object was destroyed.
#pragma once

#include "io/event_loop.h"
#include "io/fd.h"
#include "io/watch.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

namespace qrexec::io {

// A full listen backlog (EAGAIN) is retried every kConnectRetryDelay, about 5 s
// in all; the owner's own deadline usually ends the wait first.
inline constexpr std::chrono::milliseconds kConnectRetryDelay{10};
inline constexpr int kMaxConnectTries = 500;

// Non-blocking connect to a UNIX socket path. EAGAIN (full backlog) is
// reported as such so the caller can retry.
struct ConnectAttempt {
    Fd fd;
    int error = 0; // 0 = connected (or in progress)
};
ConnectAttempt connect_unix(const std::string& path);

// Non-blocking send without SIGPIPE: bytes sent, 0 when it would block, -1 on
// error (errno set).
ssize_t send_some(int fd, const void* data, size_t size);

// Connects, writes `request`, optionally shuts down the write side, and reads
// the reply to EOF (at most max_reply bytes: one more ends it as TooLong).
class UnixExchange {
  public:
    enum class Outcome { Reply, ConnectFailed, IoError, TooLong };
    struct Result {
        Outcome outcome = Outcome::Reply;
        int error = 0;
        std::string reply;
    };
    using Done = std::function<void(Result)>;

    UnixExchange(EventLoop& loop, std::string path, std::string request, bool shutdown_write,
                 size_t max_reply, Done done);
    UnixExchange(const UnixExchange&) = delete;
    UnixExchange& operator=(const UnixExchange&) = delete;

  private:
    void try_connect();
    void on_events(uint32_t events);
    void finish(Outcome outcome, int error);

    EventLoop& loop_;
    std::string path_;
    std::string request_;
    size_t sent_ = 0;
    bool shutdown_write_;
    size_t max_reply_;
    Done done_;
    Fd fd_;
    Watch watch_;
    Timer retry_;
    std::string reply_;
    int connect_tries_ = 0;
};

} // namespace qrexec::io
