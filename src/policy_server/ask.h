// `ask` without a GUI: a configured command answers the prompt (QREXEC_ASK_COMMAND or
// a program option). It runs under /bin/sh -c with
//   stdin: the policy.Ask JSON {"source","service","argument","targets",
//          "default_target","icons"} followed by a newline;
//   env:   QREXEC_ASK_SOURCE, QREXEC_ASK_SERVICE, QREXEC_ASK_ARGUMENT,
//          QREXEC_ASK_TARGETS (space separated), QREXEC_ASK_DEFAULT_TARGET,
//          QREXEC_ASK_REQUESTED_TARGET;
// and answers on stdout: "allow:TARGET", "allow" (= the default target) or "deny".
// A non-zero exit, a timeout or anything else means deny. No command = deny.
#pragma once

#include "io/event_loop.h"
#include "io/process.h"
#include "io/watch.h"
#include "policy/engine.h"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace qrexec::policy {

// $QREXEC_ASK_COMMAND, or "" when unset.
std::string ask_command_from_env();

std::string ask_request_json(const AskState& state, const SystemInfo& system);
// The chosen target, or nullopt for deny.
std::optional<std::string> parse_ask_reply(std::string_view reply, const AskState& state);

inline constexpr std::chrono::seconds kAskTimeout{120};
// Upper bound on what the prompt command may print.
inline constexpr size_t kMaxAskReply = 4096;

// Blocking (qrexec-policy-exec).
std::optional<std::string> run_ask_command(const std::string& command, const AskState& state,
                                           const SystemInfo& system,
                                           std::chrono::milliseconds timeout = kAskTimeout);

// Non-blocking (the policy daemon): runs the command and calls done() once with the
// choice from the event loop. Destroying the object kills the command.
class AskProcess {
  public:
    using Done = std::function<void(std::optional<std::string>)>;
    AskProcess(io::EventLoop& loop, const std::string& command, const AskState& state,
               const SystemInfo& system, Done done,
               std::chrono::milliseconds timeout = kAskTimeout);
    ~AskProcess();
    AskProcess(const AskProcess&) = delete;
    AskProcess& operator=(const AskProcess&) = delete;

  private:
    void on_readable();
    void on_exit();
    void finish(std::optional<std::string> choice);

    io::EventLoop& loop_;
    AskState state_;
    Done done_;
    io::Child child_;
    io::Fd out_;
    std::string reply_;
    io::Timer timer_;
    io::Watch out_watch_;  // destroyed before out_ closes
    io::Watch exit_watch_; // the command's exit, once its stdout closed
    bool finished_ = false;
};

} // namespace qrexec::policy
