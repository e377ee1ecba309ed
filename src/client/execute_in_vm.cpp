#include "client/execute_in_vm.h"

#include "client/daemon_client.h"
#include "client/qubesd.h"
#include "io/log.h"
#include "protocol/messages.h"

#include <unistd.h>

#include <cerrno>

namespace qrexec::client {

using namespace qrexec::protocol;

namespace {

constexpr std::string_view kDispvmPrefix = "@dispvm:";
constexpr size_t kUuidLen = 36;

// Kills a disposable this call created unless the call succeeded without waiting.
class DisposableGuard {
  public:
    void set(std::string name) { name_ = std::move(name); }
    void kill() {
        if (name_.empty()) return;
        auto reply = qubesd_call("admin.vm.Kill", name_);
        if (!reply || !reply->ok) QLOG("Failed to kill disposable {}", name_);
        name_.clear();
    }
    ~DisposableGuard() { kill(); }

  private:
    std::string name_;
};

bool start_vm(const std::string& dest) {
    auto reply = qubesd_call("admin.vm.Start", dest);
    if (reply && (reply->ok || reply->exception_type == "QubesVMNotHaltedError")) return true;
    QLOG("Failed to start {}", dest);
    return false;
}

// Creates the disposable; returns its name ("uuid:..." for the uuid form) or "".
std::string create_disposable(std::string_view template_spec) {
    bool uuid_form = template_spec.starts_with("uuid:");
    auto reply = qubesd_call("admin.vm.CreateDisposable", template_spec,
                             uuid_form ? std::string_view("uuid") : std::string_view());
    if (!reply || !reply->ok || reply->value.empty()) {
        QLOG("Failed to create a disposable from {}", template_spec);
        return "";
    }
    if (uuid_form && !(reply->value.starts_with("uuid:") && reply->value.size() == 5 + kUuidLen)) {
        QLOG("Invalid disposable uuid from qubesd: {}", reply->value);
        return "";
    }
    return reply->value;
}

} // namespace

bool execute_in_vm(const ExecuteInVmRequest& request) {
    size_t len_with_nul = request.command.size() + 1;
    if (len_with_nul < 2 || len_with_nul > kMaxQrexecCmdLen) {
        QLOG("Invalid command length {}", len_with_nul);
        return false;
    }
    std::string dest = request.destination;
    bool wait = request.wait;
    DisposableGuard disposable;
    bool started = false;
    if (dest.starts_with(kDispvmPrefix)) {
        if (!request.autostart) {
            QLOG("Disposable VM target {} requires autostart", dest);
            return false;
        }
        if (request.just_exec) {
            QLOG("Disposable VM target {} cannot be used with JUST_EXEC", dest);
            return false;
        }
        wait = true;
        dest = create_disposable(std::string_view(dest).substr(kDispvmPrefix.size()));
        if (dest.empty()) return false;
        disposable.set(dest);
        if (!start_vm(dest)) return false;
        started = true;
    }

    int connect_errno = 0;
    io::Fd target = connect_to_daemon(request.socket_dir, dest, &connect_errno);
    if (!target && !started && request.autostart &&
        (connect_errno == ENOENT || connect_errno == ECONNREFUSED)) {
        if (!start_vm(dest)) return false;
        target = connect_to_daemon(request.socket_dir, dest);
    }
    if (!target) return false;

    uint32_t type = request.just_exec ? MSG_JUST_EXEC : MSG_EXEC_CMDLINE;
    std::string body = request.command;
    body.push_back('\0');
    ExecParams ask{static_cast<uint32_t>(request.calling_domid), 0};
    if (!send_daemon_request(target.get(), type, ask, as_bytes(body))) return false;
    auto reply = read_daemon_reply(target.get(), type);
    if (!reply) return false;

    io::Fd own = connect_to_daemon(request.socket_dir, std::to_string(request.calling_domid));
    if (!own) return false;
    auto ident = ident_body(request.ident);
    if (!send_daemon_request(own.get(), MSG_SERVICE_CONNECT, *reply, ident)) return false;
    own.reset();

    if (wait) {
        // The target daemon closes this connection when the call's port is released.
        char byte;
        for (;;) {
            ssize_t n = read(target.get(), &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n > 0) continue; // unexpected data: keep waiting for the close
            break;
        }
    }
    return true; // a disposable is killed by the guard (it always waited)
}

} // namespace qrexec::client
