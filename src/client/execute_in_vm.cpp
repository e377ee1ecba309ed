#include "client/execute_in_vm.h"

#include "client/daemon_client.h"
#include "io/log.h"
#include "protocol/messages.h"
#include "qubesd/disposable.h"

#include <unistd.h>

#include <cerrno>

namespace qrexec::client {

using namespace qrexec::protocol;

namespace {

constexpr std::string_view kDispvmPrefix = "@dispvm:";

// Kills the disposable this call launched, whatever way the call ends.
class DisposableGuard {
  public:
    explicit DisposableGuard(std::string socket) : socket_(std::move(socket)) {}
    DisposableGuard(const DisposableGuard&) = delete;
    DisposableGuard& operator=(const DisposableGuard&) = delete;
    void set(std::string name) { name_ = std::move(name); }
    ~DisposableGuard() {
        if (name_.empty()) return;
        auto killed = qubesd::kill_vm(socket_, name_);
        if (!killed.ok) QLOG("{}", killed.error);
    }

  private:
    std::string socket_;
    std::string name_;
};

bool start_vm(const std::string& socket, const std::string& dest) {
    auto started = qubesd::start_vm(socket, dest);
    if (!started.ok) QLOG("{}", started.error);
    return started.ok;
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
    const std::string qubesd_socket = qubesd::socket_path_from_env();
    DisposableGuard disposable(qubesd_socket);
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
        auto launched = qubesd::launch_disposable(qubesd_socket, dest.substr(kDispvmPrefix.size()));
        if (!launched.ok) {
            QLOG("{}", launched.error);
            return false;
        }
        dest = std::move(launched.name);
        disposable.set(dest);
        started = true;
    }

    int connect_errno = 0;
    io::Fd target = connect_to_daemon(request.socket_dir, dest, &connect_errno);
    if (!target && !started && request.autostart &&
        (connect_errno == ENOENT || connect_errno == ECONNREFUSED)) {
        if (!start_vm(qubesd_socket, dest)) return false;
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
