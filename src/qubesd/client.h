// The qubesd client (DAEMON.md §5.5): one Admin API call over qubesd's UNIX
// socket, "<method>+ dom0 name <dest>\0<payload>" then shutdown(SHUT_WR), the
// reply read to EOF, at most kMaxReply bytes, parsed by protocol/qubesd.h.
// `dest` is checked first (qubesd/names.h): a name qubesd would refuse is
// never sent. Asynchronous on an io::EventLoop (the daemon) or synchronous
// (the client and the policy programs), both the same code.
#pragma once

#include "io/event_loop.h"
#include "io/unix_exchange.h"
#include "io/watch.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace qrexec::qubesd {

inline constexpr const char* kDefaultSocket = "/run/qubesd.sock";
inline constexpr size_t kMaxReply = 65535;
// Starting a VM can take minutes.
inline constexpr std::chrono::milliseconds kDefaultTimeout{5 * 60 * 1000};

// $QREXEC_QUBESD_SOCKET (tests), else /run/qubesd.sock.
std::string socket_path_from_env();

struct Reply {
    bool ok = false;
    std::string value;          // ok: qubesd's value (up to its first NUL)
    std::string exception_type; // qubesd answered "2\0<type>\0...": that type (escaped)
    std::string error;          // !ok: why, one log-ready line (peer text escaped)
};

class Call {
  public:
    using Done = std::function<void(Reply)>;
    Call(io::EventLoop& loop, std::string socket, std::string method, std::string dest,
         std::string payload, Done done, size_t max_reply = kMaxReply);
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

  private:
    void on_exchange(io::UnixExchange::Result result);
    void finish(Reply reply);

    std::string socket_;
    std::string method_;
    std::string dest_;
    size_t max_reply_;
    Done done_;
    io::Timer refused_; // an invalid dest is answered from the loop, not the constructor
    std::unique_ptr<io::UnixExchange> exchange_;
};

// The same call, waited for on a private loop for at most `timeout`.
Reply call(const std::string& socket, const std::string& method, const std::string& dest,
           const std::string& payload = {}, std::chrono::milliseconds timeout = kDefaultTimeout,
           size_t max_reply = kMaxReply);

// Runs `loop` until *done is set or `timeout` passes; false on timeout.
bool run_until(io::EventLoop& loop, const bool& done, std::chrono::milliseconds timeout);

} // namespace qrexec::qubesd
