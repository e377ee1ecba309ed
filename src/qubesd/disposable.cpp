#include "qubesd/disposable.h"

#include "io/log.h"
#include "io/log_field.h"
#include "qubesd/names.h"

#include <utility>

namespace qrexec::qubesd {

namespace {

// A synchronous run of one asynchronous operation on a private loop.
template <class Start>
std::optional<Outcome> run_sync(std::chrono::milliseconds timeout, Start start) {
    io::EventLoop loop;
    Outcome outcome;
    bool done = false;
    auto operation = start(loop, [&](Outcome o) {
        outcome = std::move(o);
        done = true;
    });
    if (!run_until(loop, done, timeout)) return std::nullopt;
    return outcome;
}

std::string timed_out(const char* what, const std::string& name,
                      std::chrono::milliseconds timeout) {
    return std::string(what) + " " + name + ": no answer from qubesd within " +
           std::to_string(timeout.count()) + " ms";
}

} // namespace

std::optional<std::string> created_name_problem(std::string_view value, bool uuid_form) {
    if (uuid_form) {
        if (is_vm_uuid(value)) return std::nullopt;
        return "not uuid: and a canonical lower-case UUID";
    }
    if (value.starts_with(kUuidPrefix)) return "a uuid: reference where a name was asked for";
    return vm_reference_problem(value);
}

std::unique_ptr<Call> start_vm(io::EventLoop& loop, const std::string& socket,
                               const std::string& name, OutcomeDone done) {
    return std::make_unique<Call>(loop, socket, "admin.vm.Start", name, "",
                                  [done = std::move(done), name](Reply reply) {
                                      Outcome outcome;
                                      // Already running is as good as started.
                                      outcome.ok = reply.ok || reply.exception_type == kVmNotHalted;
                                      if (outcome.ok) outcome.name = name;
                                      outcome.error = std::move(reply.error);
                                      done(std::move(outcome));
                                  });
}

std::unique_ptr<Call> kill_vm(io::EventLoop& loop, const std::string& socket,
                              const std::string& name, OutcomeDone done) {
    return std::make_unique<Call>(loop, socket, "admin.vm.Kill", name, "",
                                  [done = std::move(done), name](Reply reply) {
                                      Outcome outcome;
                                      outcome.ok = reply.ok;
                                      if (outcome.ok) outcome.name = name;
                                      outcome.error = std::move(reply.error);
                                      done(std::move(outcome));
                                  });
}

// ---- DisposableLaunch ---------------------------------------------------------

DisposableLaunch::DisposableLaunch(io::EventLoop& loop, std::string socket,
                                   std::string template_spec, OutcomeDone done)
    : loop_(loop), socket_(std::move(socket)), template_(std::move(template_spec)),
      uuid_form_(template_.starts_with(kUuidPrefix)), done_(std::move(done)) {
    // The template is checked by the Call like every name sent to qubesd.
    call_ = std::make_unique<Call>(loop_, socket_, "admin.vm.CreateDisposable", template_,
                                   uuid_form_ ? "uuid" : "",
                                   [this](Reply reply) { on_created(std::move(reply)); });
}

std::optional<std::string> DisposableLaunch::abandoned_disposable() const {
    if (created_.empty()) return std::nullopt;
    return created_;
}

void DisposableLaunch::on_created(Reply reply) {
    if (!reply.ok) {
        finish({false, "", std::move(reply.error)});
        return;
    }
    if (auto problem = created_name_problem(reply.value, uuid_form_)) {
        // Nothing is called with it: not even a kill (it names no VM we may touch).
        finish({false, "",
                "admin.vm.CreateDisposable " + template_ + " returned an invalid name '" +
                    io::log_field(reply.value) + "': " + *problem});
        return;
    }
    created_ = std::move(reply.value);
    QLOG("created disposable {} from {}", created_, template_);
    call_ = start_vm(loop_, socket_, created_, [this](Outcome o) { on_started(std::move(o)); });
}

void DisposableLaunch::on_started(Outcome started) {
    if (started.ok) {
        Outcome outcome{true, std::move(created_), ""};
        created_.clear(); // the caller's now
        finish(std::move(outcome));
        return;
    }
    start_error_ = std::move(started.error);
    QLOG("disposable {} did not start; killing it", created_);
    call_ = kill_vm(loop_, socket_, created_, [this](Outcome o) { on_killed(std::move(o)); });
}

void DisposableLaunch::on_killed(Outcome killed) {
    if (!killed.ok) QLOG("{}", killed.error);
    created_.clear(); // killed, or qubesd cannot be asked again meaningfully
    finish({false, "", std::move(start_error_)});
}

void DisposableLaunch::finish(Outcome outcome) {
    call_.reset();
    auto done = std::move(done_);
    done(std::move(outcome)); // may destroy *this: nothing may follow
}

// ---- synchronous forms -----------------------------------------------------------

Outcome start_vm(const std::string& socket, const std::string& name,
                 std::chrono::milliseconds timeout) {
    auto outcome = run_sync(timeout, [&](io::EventLoop& loop, OutcomeDone done) {
        return start_vm(loop, socket, name, std::move(done));
    });
    return outcome ? *outcome : Outcome{false, "", timed_out("admin.vm.Start", name, timeout)};
}

Outcome kill_vm(const std::string& socket, const std::string& name,
                std::chrono::milliseconds timeout) {
    auto outcome = run_sync(timeout, [&](io::EventLoop& loop, OutcomeDone done) {
        return kill_vm(loop, socket, name, std::move(done));
    });
    return outcome ? *outcome : Outcome{false, "", timed_out("admin.vm.Kill", name, timeout)};
}

Outcome launch_disposable(const std::string& socket, const std::string& template_spec,
                          std::chrono::milliseconds timeout) {
    io::EventLoop loop;
    Outcome outcome;
    bool done = false;
    DisposableLaunch launch(loop, socket, template_spec, [&](Outcome o) {
        outcome = std::move(o);
        done = true;
    });
    if (run_until(loop, done, timeout)) return outcome;
    std::string error = timed_out("admin.vm.CreateDisposable/Start", template_spec, timeout);
    if (auto created = launch.abandoned_disposable()) {
        Outcome killed = kill_vm(socket, *created, kDefaultTimeout);
        if (!killed.ok) QLOG("{}", killed.error);
    }
    return {false, "", std::move(error)};
}

} // namespace qrexec::qubesd
