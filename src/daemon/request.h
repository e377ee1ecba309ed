// One VM-initiated request (DAEMON.md §5), driven asynchronously by the
// daemon's event loop: policy daemon socket -> (fallback) policy program, or
// the in-process policy (--policy-in-process) ->
// act on "allow" (target daemon call / qrexec-client for dom0 / qubesd for
// autostart and disposables, qubesd/disposable.h). Every wait has a deadline; any failure ends in
// a refusal with a log line saying why.
#pragma once

#include "daemon/async.h"
#include "daemon/inprocess_policy.h"
#include "daemon/options.h"
#include "daemon/policy_client.h"
#include "daemon/port_allocator.h"
#include "io/log_field.h"
#include "protocol/trigger.h"
#include "qubesd/disposable.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace qrexec::daemon {

struct RequestSettings {
    std::string domname;
    uint32_t domid = 0;
    std::string socket_dir; // absolute; also the daemon's cwd
    std::string policy_socket;
    std::string policy_program;
    std::string qubesd_socket;
    std::string qrexec_client;
    Timeouts timeouts;
};

class Request;

// What a request needs from the daemon that owns it. request_connect and
// request_refuse end the request (the daemon destroys it later, outside the
// request's own callbacks).
class RequestHost {
  public:
    virtual ~RequestHost() = default;
    virtual io::EventLoop& loop() = 0;
    virtual Reaper& reaper() = 0;
    // Allowed: the caller serves the data vchan for (domain, port).
    virtual void request_connect(Request& request, uint32_t domain, uint32_t port) = 0;
    virtual void request_refuse(Request& request) = 0;
    // A disposable call: keep `connection` (to the disposable's daemon) until
    // that daemon closes it, then kill the disposable.
    virtual void keep_disposable(io::Fd connection, std::string name) = 0;
    virtual void kill_disposable(std::string name) = 0;
    // --policy-in-process: the cached policy, or nullptr (policy socket/program).
    virtual const InProcessPolicy* policy_cache() const { return nullptr; }
    // Log lines about refused requests of this source go through this limiter
    // (nullptr: unlimited).
    virtual io::RateLimiter* refusal_log_limiter() { return nullptr; }
};

class Request {
  public:
    Request(RequestHost& host, const RequestSettings& settings, uint64_t id,
            protocol::ValidTrigger trigger);
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    // Children still needed (a running dom0 service) go to the reaper; a
    // disposable that was created but not handed over is killed.
    ~Request();

    void start();

    uint64_t id() const { return id_; }
    const protocol::Ident& ident() const { return trigger_.ident; }
    const std::string& ident_text() const { return ident_text_; }
    // Ended (answered) requests are neither matched nor counted as pending.
    bool finished() const { return finished_; }
    void mark_finished() { finished_ = true; }
    std::string describe() const;

  private:
    enum class Stage {
        Created,
        PolicySocket,
        PolicyProgram,
        PolicyInProcess,
        Disposable,
        StartVm,
        Target,
        Dom0
    };

    void ask_policy_socket();
    void on_policy_socket(UnixExchange::Result result);
    void run_policy_program();
    void on_policy_program(ProgramRun::Result result);
    void evaluate_in_process(const InProcessPolicy& cache);
    void on_in_process_reply(const std::string& reply);
    void decide(const PolicyParse& parse, const char* from);
    void create_disposable(const std::string& template_name);
    void on_disposable(qubesd::Outcome launched);
    void start_vm();
    void connect_target(bool may_start);
    void on_target(DaemonCall::Result result, bool may_start);
    void run_dom0_client();
    void on_dom0_client_exit();

    void trace(std::string_view stage, std::string_view extra = {}) const;
    void arm(std::chrono::milliseconds timeout, const char* what);
    void refuse(const std::string& reason);
    // The suffix for an admitted per-request log line, or nullopt (rate-limited).
    std::optional<std::string> log_admitted();
    void allow(uint32_t domain, uint32_t port);

    RequestHost& host_;
    const RequestSettings& settings_;
    uint64_t id_;
    protocol::ValidTrigger trigger_;
    std::string ident_text_;
    PolicyQuery query_;
    Stage stage_ = Stage::Created;
    bool finished_ = false;
    bool refused_ = false;

    CallPlan plan_;
    std::optional<std::string> disposable_; // created by us, not yet handed over

    std::unique_ptr<UnixExchange> exchange_;
    std::unique_ptr<qubesd::Call> qubesd_call_;
    std::unique_ptr<qubesd::DisposableLaunch> launch_;
    std::unique_ptr<ProgramRun> program_;
    std::unique_ptr<PolicyEvaluation> evaluation_;
    std::unique_ptr<DaemonCall> call_;
    io::Child dom0_client_;
    Watch dom0_watch_;
    Timer deadline_;
};

} // namespace qrexec::daemon
