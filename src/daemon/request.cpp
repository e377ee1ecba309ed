#include "daemon/request.h"

#include "io/log.h"
#include "io/process.h"
#include "io/trace.h"

#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace qrexec::daemon {

Request::Request(RequestHost& host, const RequestSettings& settings, uint64_t id,
                 protocol::ValidTrigger trigger)
    : host_(host), settings_(settings), id_(id), trigger_(std::move(trigger)),
      ident_text_(protocol::ident_text(trigger_.ident)), deadline_(host.loop()) {
    query_.source = settings_.domname;
    query_.requested_source = trigger_.requested_source;
    query_.intended_target = trigger_.target;
    query_.service_and_arg = trigger_.service;
}

Request::~Request() {
    deadline_.cancel();
    dom0_watch_.reset();
    if (dom0_client_.running() && !dom0_client_.try_wait()) {
        // Unanswered qrexec-client: it can no longer connect back usefully.
        if (!finished_ || refused_)
            host_.reaper().terminate(std::move(dom0_client_), "qrexec-client for " + describe());
        else
            host_.reaper().adopt(std::move(dom0_client_), "qrexec-client for " + describe());
    }
    if (disposable_) host_.kill_disposable(*disposable_);
    if (launch_)
        if (auto created = launch_->abandoned_disposable()) host_.kill_disposable(*created);
}

std::string Request::describe() const {
    // VM-supplied fields: bounded and escaped (a service name may be 65000 bytes).
    return "request '" + io::log_field(ident_text_) + "' (" + settings_.domname + " -> " +
           (trigger_.target.empty() ? std::string("''") : io::log_field(trigger_.target)) + ", " +
           io::log_field(trigger_.service) + ")";
}

// Stage trace (io/trace.h): this request as its agent names it.
void Request::trace(std::string_view stage, std::string_view extra) const {
    if (!io::trace_on()) return;
    io::trace_line(stage, fmt::format("trig:{}:{}{}{}", settings_.domid, ident_text_,
                                      extra.empty() ? "" : " ", extra));
}

void Request::start() {
    trace("trigger-received");
    if (const InProcessPolicy* cache = host_.policy_cache()) {
        evaluate_in_process(*cache);
        return;
    }
    ask_policy_socket();
}

void Request::arm(std::chrono::milliseconds timeout, const char* what) {
    deadline_.start(timeout, [this, timeout, what] {
        refuse("timed out after " + std::to_string(timeout.count()) + " ms waiting for " + what);
    });
}

std::optional<std::string> Request::log_admitted() {
    io::RateLimiter* limiter = host_.refusal_log_limiter();
    if (!limiter) return std::string();
    auto admission = limiter->admit();
    if (!admission.log) return std::nullopt;
    return io::suppressed_note(admission.suppressed);
}

void Request::refuse(const std::string& reason) {
    if (finished_) return;
    if (auto note = log_admitted())
        QLOG("refusing {}: {}{}", describe(), io::log_field(reason, 512), *note);
    trace("refused");
    finished_ = true;
    refused_ = true;
    deadline_.cancel();
    if (stage_ == Stage::Dom0 && dom0_client_.running()) ::kill(dom0_client_.pid(), SIGTERM);
    host_.request_refuse(*this);
}

void Request::allow(uint32_t domain, uint32_t port) {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    trace("target-connected", io::trace_vchan_token(settings_.domid, domain, port));
    host_.request_connect(*this, domain, port);
}

// ---- policy -----------------------------------------------------------------

void Request::ask_policy_socket() {
    stage_ = Stage::PolicySocket;
    trace("policy-asked", "via=socket");
    arm(settings_.timeouts.policy, "the policy daemon");
    exchange_ = std::make_unique<UnixExchange>(
        host_.loop(), settings_.policy_socket, format_policy_request(query_), false,
        kMaxPolicyReply, [this](UnixExchange::Result r) { on_policy_socket(std::move(r)); });
}

void Request::on_policy_socket(UnixExchange::Result result) {
    using Outcome = UnixExchange::Outcome;
    switch (result.outcome) {
    case Outcome::ConnectFailed:
        if (auto note = log_admitted())
            QLOG("cannot connect to policy daemon at {}: {}; using {}{}", settings_.policy_socket,
                 io::errno_text(result.error), settings_.policy_program, *note);
        run_policy_program();
        return;
    case Outcome::IoError:
        refuse("policy daemon connection failed: " + io::errno_text(result.error));
        return;
    case Outcome::TooLong:
        if (auto note = log_admitted())
            QLOG("policy daemon reply longer than {} bytes; using {}{}", kMaxPolicyReply,
                 settings_.policy_program, *note);
        run_policy_program();
        return;
    case Outcome::Reply:
        break;
    }
    auto parse = parse_policy_reply(result.reply);
    if (!parse.decision) {
        if (auto note = log_admitted())
            QLOG("malformed reply from policy daemon ({}); using {}{}",
                 io::log_field(parse.error, 256), settings_.policy_program, *note);
        run_policy_program();
        return;
    }
    decide(parse, "policy daemon");
}

void Request::run_policy_program() {
    stage_ = Stage::PolicyProgram;
    trace("policy-asked", "via=program");
    arm(settings_.timeouts.policy, "the policy program");
    program_ = std::make_unique<ProgramRun>(
        host_.loop(), host_.reaper(), settings_.policy_program, policy_program_argv(query_),
        kMaxPolicyReply, [this](ProgramRun::Result r) { on_policy_program(std::move(r)); });
}

void Request::on_policy_program(ProgramRun::Result result) {
    if (result.too_long) {
        refuse("policy program output longer than " + std::to_string(kMaxPolicyReply) + " bytes");
        return;
    }
    if (result.status != 0) {
        refuse("policy program " + settings_.policy_program + " failed with status " +
               std::to_string(result.status));
        return;
    }
    auto parse = parse_policy_reply(result.output);
    if (!parse.decision) {
        refuse("malformed reply from policy program: " + parse.error);
        return;
    }
    decide(parse, "policy program");
}

void Request::evaluate_in_process(const InProcessPolicy& cache) {
    stage_ = Stage::PolicyInProcess;
    trace("policy-asked", "via=in-process");
    // Long enough for an ask prompt (the ask command has its own, shorter bound).
    arm(settings_.timeouts.policy, "the in-process policy");
    evaluation_ = std::make_unique<PolicyEvaluation>(
        host_.loop(), cache, query_, describe(),
        [this](std::string reply) { on_in_process_reply(reply); });
    evaluation_->run(); // may answer at once (no I/O for allow/deny)
}

void Request::on_in_process_reply(const std::string& reply) {
    // The same strict parser as the socket and program answers, so that both
    // paths act on exactly the same PolicyDecision.
    auto parse = parse_policy_reply(reply);
    if (!parse.decision) {
        refuse("malformed reply from the in-process policy: " + parse.error);
        return;
    }
    decide(parse, "in-process policy");
}

void Request::decide(const PolicyParse& parse, const char* from) {
    for (const auto& line : parse.ignored_lines)
        QLOG("ignoring unknown line in reply from {}: '{}'", from, io::log_field(line));
    const auto& decision = *parse.decision;
    trace("policy-answered", decision.allow ? "result=allow" : "result=deny");
    if (!decision.allow) {
        refuse(std::string("denied by ") + from);
        return;
    }
    plan_ = plan_call(decision, trigger_.service, settings_.domname);
    if (plan_.to_dom0) {
        run_dom0_client();
        return;
    }
    if (auto template_name = dispvm_template(plan_.destination)) {
        if (!plan_.autostart) {
            refuse("disposable target " + plan_.destination + " requires autostart");
            return;
        }
        create_disposable(*template_name);
        return;
    }
    connect_target(plan_.autostart);
}

// ---- qubesd: disposables and autostart ---------------------------------------

void Request::create_disposable(const std::string& template_name) {
    stage_ = Stage::Disposable;
    // One bound for creating and starting it (qubesd/disposable.h kills a
    // disposable that did not start; the destructor one that is abandoned).
    arm(settings_.timeouts.qubesd, "qubesd (admin.vm.CreateDisposable, admin.vm.Start)");
    launch_ = std::make_unique<qubesd::DisposableLaunch>(
        host_.loop(), settings_.qubesd_socket, template_name,
        [this](qubesd::Outcome launched) { on_disposable(std::move(launched)); });
}

void Request::on_disposable(qubesd::Outcome launched) {
    if (!launched.ok) {
        refuse(launched.error);
        return;
    }
    QLOG("started disposable {} for {}", launched.name, describe());
    disposable_ = launched.name;
    plan_.destination = std::move(launched.name);
    connect_target(false);
}

void Request::start_vm() {
    stage_ = Stage::StartVm;
    arm(settings_.timeouts.qubesd, "qubesd (admin.vm.Start)");
    qubesd_call_ = qubesd::start_vm(host_.loop(), settings_.qubesd_socket, plan_.destination,
                                    [this](qubesd::Outcome started) {
                                        if (!started.ok) {
                                            refuse(started.error);
                                            return;
                                        }
                                        connect_target(false);
                                    });
}

// ---- target VM --------------------------------------------------------------

void Request::connect_target(bool may_start) {
    if (!is_safe_destination(plan_.destination)) {
        refuse("invalid target '" + plan_.destination + "' in policy reply");
        return;
    }
    stage_ = Stage::Target;
    arm(settings_.timeouts.target, "the target's qrexec-daemon");
    // Relative: the daemon's cwd is the socket directory (no sun_path limit on the dir).
    call_ = std::make_unique<DaemonCall>(
        host_.loop(), "qrexec." + plan_.destination, protocol::MSG_EXEC_CMDLINE,
        protocol::ExecParams{settings_.domid, 0}, plan_.command,
        [this, may_start](DaemonCall::Result r) { on_target(std::move(r), may_start); });
}

void Request::on_target(DaemonCall::Result result, bool may_start) {
    switch (result.outcome) {
    case DaemonCall::Outcome::NotRunning:
        if (may_start) {
            start_vm();
            return;
        }
        refuse("target " + plan_.destination + " is not running (" + result.error + ")" +
               (plan_.autostart ? "" : " and autostart is off"));
        return;
    case DaemonCall::Outcome::Failed:
        refuse(result.error);
        return;
    case DaemonCall::Outcome::Reply:
        break;
    }
    auto [domain, port] = result.reply;
    if (!PortAllocator::in_range(port)) {
        refuse("target daemon answered with invalid port " + std::to_string(port));
        return;
    }
    if (disposable_) {
        host_.keep_disposable(call_->take_connection(), *disposable_);
        disposable_.reset();
    }
    allow(domain, port);
}

// ---- dom0 -------------------------------------------------------------------

void Request::run_dom0_client() {
    stage_ = Stage::Dom0;
    arm(settings_.timeouts.dom0_client, "qrexec-client to connect back");
    std::vector<std::string> argv = {
        settings_.qrexec_client,
        "-d",
        "dom0",
        "-c",
        ident_text_ + "," + plan_.source + "," + std::to_string(settings_.domid),
        "-w",
        "5",
        "--socket-dir=" + settings_.socket_dir,
        "--",
        plan_.command,
    };
    const std::string& path = settings_.qrexec_client;
    const std::string& source = plan_.source;
    try {
        dom0_client_ = io::spawn({}, [&]() -> int {
            io::close_fds_from(3);
            ::setenv("QREXEC_REMOTE_DOMAIN", source.c_str(), 1);
            io::exec_program(path, argv);
            QLOG_ERRNO("cannot execute {}", path);
            return 125;
        });
    } catch (const std::exception& e) {
        deadline_.start(std::chrono::milliseconds(0), [this, what = std::string(e.what())] {
            refuse("cannot start qrexec-client: " + what);
        });
        return;
    }
    if (dom0_client_.exit_fd() >= 0)
        dom0_watch_ = Watch(host_.loop(), dom0_client_.exit_fd(), EPOLLIN,
                            [this](uint32_t) { on_dom0_client_exit(); });
}

void Request::on_dom0_client_exit() {
    auto status = dom0_client_.try_wait();
    if (!status) return;
    dom0_watch_.reset();
    // qrexec-client reads our reply to its SERVICE_CONNECT before it can exit
    // successfully, so a request still unanswered here was not served.
    refuse("qrexec-client exited with status " + std::to_string(*status) +
           " before connecting back");
}

} // namespace qrexec::daemon
