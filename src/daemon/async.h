// Small asynchronous building blocks for the daemon's single event loop:
// RAII fd watches and timers, a child reaper, a "send request, read reply to
// EOF" UNIX-socket exchange (policy daemon; all in io/), a qrexec-daemon socket
// call (P§4.2 handshake + EXEC_CMDLINE + reply) and a watched program run
// (policy program). Every completion is delivered from the loop, never from
// the constructor, and never after the object was destroyed.
#pragma once

#include "daemon/frame_buffer.h"
#include "io/event_loop.h"
#include "io/fd.h"
#include "io/process.h"
#include "io/unix_exchange.h"
#include "io/watch.h"
#include "protocol/messages.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::daemon {

// Watch, Timer and Reaper live in io/watch.h (the agent and the policy daemon
// use them too); these names keep the daemon's code unchanged.
using io::Reaper;
using io::Timer;
using io::Watch;
// The "request, reply to EOF" exchange lives in io/unix_exchange.h (qubesd's
// client uses it too).
using io::connect_unix;
using io::ConnectAttempt;
using io::UnixExchange;

// A call to another qrexec-daemon's client socket: handshake (P§4.2), one
// EXEC_CMDLINE/JUST_EXEC{params, cmdline}, and its {domain, port} reply.
class DaemonCall {
  public:
    enum class Outcome { Reply, NotRunning, Failed };
    struct Result {
        Outcome outcome = Outcome::Failed;
        std::string error;
        protocol::ExecParams reply{};
    };
    using Done = std::function<void(Result)>;

    DaemonCall(io::EventLoop& loop, std::string path, uint32_t type, protocol::ExecParams params,
               const std::string& cmdline, Done done);
    DaemonCall(const DaemonCall&) = delete;
    DaemonCall& operator=(const DaemonCall&) = delete;
    // The connection, after a Reply (kept open by disposable calls, whose
    // target daemon closes it when the call terminates).
    io::Fd take_connection();

  private:
    void try_connect();
    void on_events(uint32_t events);
    void finish(Result result);
    bool process_frames(); // true when finished

    io::EventLoop& loop_;
    std::string path_;
    uint32_t type_;
    std::vector<std::byte> out_;
    size_t sent_ = 0;
    Done done_;
    io::Fd fd_;
    Watch watch_;
    Timer retry_;
    FrameBuffer in_;
    bool got_hello_ = false;
    int connect_tries_ = 0;
};

// Runs a program whose stdin+stdout is one socketpair end; collects stdout to
// EOF (at most max_output bytes) and its exit status.
class ProgramRun {
  public:
    struct Result {
        int status = 255; // exit status, 128+signal
        bool too_long = false;
        std::string output;
    };
    using Done = std::function<void(Result)>;

    ProgramRun(io::EventLoop& loop, Reaper& reaper, std::string path, std::vector<std::string> argv,
               size_t max_output, Done done);
    ProgramRun(const ProgramRun&) = delete;
    ProgramRun& operator=(const ProgramRun&) = delete;
    ~ProgramRun();

  private:
    void on_output();
    void on_exit();
    void maybe_finish();

    io::EventLoop& loop_;
    Reaper& reaper_;
    size_t max_output_;
    Done done_;
    io::Child child_;
    io::Fd out_;
    Watch out_watch_;
    Watch exit_watch_;
    Timer start_failed_;
    std::string output_;
    bool eof_ = false;
    bool too_long_ = false;
};

} // namespace qrexec::daemon
