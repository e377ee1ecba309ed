// Starting VMs and the disposable's life (DAEMON.md §5.5), over the one
// qubesd client: the only place that creates, starts and kills a VM.
//   start:  admin.vm.Start; success, or QubesVMNotHaltedError (already running).
//   launch: admin.vm.CreateDisposable on the template (payload "uuid" for a
//           "uuid:<uuid>" template), the returned name checked (a VM name; for
//           the uuid form "uuid:" + a canonical UUID), then start; a disposable
//           that does not start is killed before the failure is reported.
//   kill:   admin.vm.Kill.
// Each exists on an io::EventLoop (the daemon) and synchronously (qrexec-client,
// qrexec-policy-exec).
#pragma once

#include "io/event_loop.h"
#include "qubesd/client.h"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace qrexec::qubesd {

inline constexpr const char* kVmNotHalted = "QubesVMNotHaltedError";

struct Outcome {
    bool ok = false;
    std::string name;  // launch: the disposable's name (ok), now the caller's to kill
    std::string error; // !ok: why, one log-ready line
};
using OutcomeDone = std::function<void(Outcome)>;

// The name CreateDisposable returned, checked: nullopt when usable, else why not.
std::optional<std::string> created_name_problem(std::string_view value, bool uuid_form);

std::unique_ptr<Call> start_vm(io::EventLoop& loop, const std::string& socket,
                               const std::string& name, OutcomeDone done);
std::unique_ptr<Call> kill_vm(io::EventLoop& loop, const std::string& socket,
                              const std::string& name, OutcomeDone done);

class DisposableLaunch {
  public:
    // template_spec: a template's name or "uuid:<uuid>".
    DisposableLaunch(io::EventLoop& loop, std::string socket, std::string template_spec,
                     OutcomeDone done);
    DisposableLaunch(const DisposableLaunch&) = delete;
    DisposableLaunch& operator=(const DisposableLaunch&) = delete;
    // A disposable this launch created and neither handed over nor killed yet:
    // whoever abandons the launch (its deadline passed) must kill it.
    std::optional<std::string> abandoned_disposable() const;

  private:
    void on_created(Reply reply);
    void on_started(Outcome started);
    void on_killed(Outcome killed);
    void finish(Outcome outcome);

    io::EventLoop& loop_;
    std::string socket_;
    std::string template_;
    bool uuid_form_;
    OutcomeDone done_;
    std::string created_;     // the disposable, once created
    std::string start_error_; // why it did not start (while it is being killed)
    std::unique_ptr<Call> call_;
};

// Synchronous forms: a private loop, at most `timeout` for all their calls. A
// launch that runs out of time kills the disposable it created.
Outcome start_vm(const std::string& socket, const std::string& name,
                 std::chrono::milliseconds timeout = kDefaultTimeout);
Outcome kill_vm(const std::string& socket, const std::string& name,
                std::chrono::milliseconds timeout = kDefaultTimeout);
Outcome launch_disposable(const std::string& socket, const std::string& template_spec,
                          std::chrono::milliseconds timeout = 2 * kDefaultTimeout);

} // namespace qrexec::qubesd
