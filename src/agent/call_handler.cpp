#include "agent/call_handler.h"

#include "agent/service_log.h"
#include "agent/signal_routes.h"

#include "io/fd.h"
#include "io/fd_limit.h"
#include "io/log.h"
#include "io/process.h"
#include "io/trace.h"
#include "protocol/messages.h"
#include "services/exec.h"
#include "services/lookup.h"
#include "services/prepare.h"
#include "services/user_session.h"
#include "stream/engine.h"
#include "transport/vchan.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <system_error>
#include <variant>

namespace qrexec::agent {
namespace {

using namespace qrexec::protocol;

constexpr int kDataConnectTimeoutMs = 120'000;

void send_frame(transport::Channel& channel, uint32_t type, std::span<const std::byte> payload) {
    auto frame = encode_frame(type, payload);
    if (!channel.send_all(frame, kDataConnectTimeoutMs))
        QLOG("failed to send {} on the data vchan", msg_type_name(type));
}

// The handler's trace token (io/trace.h): its data vchan; empty when not tracing.
struct HandlerTrace {
    std::string token;
    void stage(std::string_view stage, std::string_view extra = {}) const {
        if (token.empty()) return;
        io::trace_line(stage, extra.empty() ? token : token + " " + std::string(extra));
    }
};

// Failures found before anything was spawned: a fixed three-message answer (P§5.9).
int report_failure_before_spawn(transport::Channel& channel, int code, const HandlerTrace& trace) {
    trace.stage("exit-code", fmt::format("code={}", code));
    send_frame(channel, MSG_DATA_STDOUT, {});
    send_frame(channel, MSG_DATA_STDERR, {});
    send_frame(channel, MSG_DATA_EXIT_CODE, encode_exit_code(code));
    return code;
}

// Runs in the spawned child. `handler_pid` is the per-call handler (the process
// that reacts to SIGUSR1, AGENT.md §6), i.e. the child's parent, not the child.
[[noreturn]] void exec_prepared(const CallRequest& request, const services::PreparedCall& call,
                                pid_t handler_pid) {
    const auto& command = *request.command;
    if (request.run_as == RunAs::RequestedUser)
        services::exec_call_as_user(command, call, request.user, handler_pid);
    if (call.kind == services::CallKind::Executable)
        services::exec_service(call.path, command, services::ExecStyle::Direct);
    const char* shell = std::getenv("SHELL");
    services::exec_shell_command_argv0(command.command, shell && *shell ? shell : "/bin/sh", "sh");
}

// The service's process: posix_spawn'ed when the child has nothing to do but
// exec; forked (exec_prepared) for a PAM session, or to let the child report
// a failure to exec with the diagnostics and exit code of AGENT.md §4.
io::Child spawn_service(const CallRequest& request, const services::PreparedCall& call,
                        io::StdioFds stdio, bool new_session, pid_t handler_pid) {
    auto spec = services::direct_exec_spec(*request.command, call, request.run_as == RunAs::Myself,
                                           request.user, request.own_user);
    if (spec) {
        spec->stdio = stdio;
        spec->new_session = new_session;
        try {
            return io::spawn_exec(*spec);
        } catch (const std::system_error&) {
            // fall through: the forked child fails the same way and reports it
        }
    }
    return io::spawn(stdio, [&]() -> int {
        io::close_fds_from(3);
        if (new_session) setsid();
        exec_prepared(request, call, handler_pid);
    });
}

int run_just_exec(transport::Channel& channel, const CallRequest& request,
                  const HandlerTrace& trace) {
    int code = kExitProblem;
    if (request.command && !request.config_failed) {
        auto prepared = services::prepare_call(
            *request.command, services::SearchPaths::from_environment(), request.config);
        if (!prepared.ok()) {
            code = prepared.failure;
        } else if (prepared.call->kind == services::CallKind::Socket ||
                   prepared.call->kind == services::CallKind::Tcp) {
            code = 0; // header written; the connection closes when we exit
        } else {
            io::Fd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
            int err_fd = request.command->is_service ? 2 : null_fd.get();
            pid_t handler_pid = getpid();
            auto child = spawn_service(request, *prepared.call,
                                       {null_fd.get(), null_fd.get(), err_fd}, true, handler_pid);
            trace.stage("service-spawned", fmt::format("pid={}", child.pid()));
            child.detach(); // runs on; only the spawn is reported
            code = 0;
        }
    }
    trace.stage("exit-code", fmt::format("code={}", code));
    send_frame(channel, MSG_DATA_EXIT_CODE, encode_exit_code(code));
    return 0;
}

// What a forked child that cannot run the program reports (AGENT.md §4): its
// diagnostic on its stderr, then its exit code; sent here without the child.
int report_refusal(transport::Channel& channel, const services::ExecRefusal& refusal,
                   LineSplitter* service_log, const HandlerTrace& trace) {
    std::string line = QLOG_TEXT("{}", refusal.message);
    if (service_log) service_log->feed(as_bytes(std::span(line)));
    trace.stage("exit-code", fmt::format("code={}", refusal.code));
    send_frame(channel, MSG_DATA_STDOUT, {});
    send_frame(channel, MSG_DATA_STDERR, as_bytes(std::span(line)));
    send_frame(channel, MSG_DATA_STDERR, {});
    send_frame(channel, MSG_DATA_EXIT_CODE, encode_exit_code(refusal.code));
    return refusal.code;
}

// The in-process variant of spawn_service: posix_spawn only (this process has
// other calls' threads: no fork), QREXEC_AGENT_PID as an environment entry, and
// the service's pid registered for SIGUSR1 routing before any signal of it is read.
std::variant<io::Child, services::ExecRefusal>
spawn_service_in_process(const CallRequest& request, const services::PreparedCall& call,
                         io::StdioFds stdio, const InProcessCall& context) {
    const auto& command = *request.command;
    if (auto refusal = services::direct_exec_refusal(command, call, request.user, request.own_user))
        return *refusal;
    auto spec = services::direct_exec_spec(command, call, false, request.user, request.own_user);
    if (!spec) return services::ExecRefusal{kExitProblem, "cannot run this call without a session"};
    if (!spec->env) spec->env = services::current_environment();
    services::set_env(*spec->env, "QREXEC_AGENT_PID", std::to_string(context.agent_pid));
    spec->stdio = stdio;
    try {
        auto child = context.routes->spawn_and_add(context.switch_event_fd,
                                                   [&] { return io::spawn_exec(*spec); });
        if (rlim_t replaced = context.replaced_fd_limit ? context.replaced_fd_limit->load() : 0)
            io::restore_soft_fd_limit(child.pid(), replaced);
        return child;
    } catch (const std::system_error& e) {
        return services::exec_failure_refusal(spec->path, e.code().value());
    }
}

int run_exec_cmdline(transport::Channel& channel, uint32_t version, const CallRequest& request,
                     const HandlerTrace& trace, const InProcessCall* in_process) {
    if (!request.command || request.config_failed)
        return report_failure_before_spawn(channel, kExitProblem, trace);
    auto prepared = services::prepare_call(
        *request.command, services::SearchPaths::from_environment(), request.config);
    if (!prepared.ok()) return report_failure_before_spawn(channel, prepared.failure, trace);
    auto& call = *prepared.call;

    stream::EngineConfig config;
    config.role = stream::Role::Service;
    config.version = version;
    config.trace_tokens = trace.token;
    if (call.kind == services::CallKind::Socket || call.kind == services::CallKind::Tcp) {
        int fd = call.socket.release();
        config.input = {fd, stream::CloseMethod::Shutdown};
        config.output = {fd, stream::CloseMethod::Shutdown};
        config.exit_on_client_eof = call.config.exit_on_client_eof;
        config.exit_on_service_eof = call.config.exit_on_service_eof;
        auto result = stream::run_engine(channel, std::move(config), nullptr);
        return result.protocol_error ? 1 : result.exit_code.value_or(0);
    }

    if (!in_process) stream::block_sigusr1(); // in the agent: blocked since start-up
    auto stdin_pair = io::make_socketpair();
    auto stdout_pair = io::make_socketpair();
    auto stderr_pipe = io::make_pipe();
    // Service calls: stderr also goes to the system log, tagged like upstream's
    // `logger -t "<descriptor as received>-<source>"`.
    std::optional<LineSplitter> service_log;
    if (request.command->is_service)
        service_log.emplace(
            syslog_sink(request.command->descriptor + "-" + request.command->source_domain));
    io::StdioFds stdio{stdin_pair.second.get(), stdout_pair.second.get(), stderr_pipe.second.get()};
    io::Child child;
    if (in_process) {
        auto started = spawn_service_in_process(request, call, stdio, *in_process);
        if (auto* refusal = std::get_if<services::ExecRefusal>(&started))
            return report_refusal(channel, *refusal, service_log ? &*service_log : nullptr, trace);
        child = std::move(std::get<io::Child>(started));
    } else {
        child = spawn_service(request, call, stdio, false, getpid());
    }
    trace.stage("service-spawned", fmt::format("pid={}", child.pid()));
    config.output = {stdin_pair.first.release(), stream::CloseMethod::Shutdown};
    config.input = {stdout_pair.first.release(), stream::CloseMethod::Shutdown};
    config.error = {stderr_pipe.first.release(), stream::CloseMethod::Close};
    config.single_socket_on_sigusr1 = true;
    if (in_process) {
        config.single_socket_event_fd = in_process->switch_event_fd;
        config.collect_pending_switch = [in_process] {
            for (pid_t sender : in_process->routes->drain(in_process->sigusr1_fd))
                QLOG("SIGUSR1 from pid {} belongs to no running call, ignoring it", sender);
        };
    }
    if (service_log)
        config.stderr_copy = [&service_log](std::span<const std::byte> data) {
            service_log->feed(data);
        };
    stdin_pair.second.reset();
    stdout_pair.second.reset();
    stderr_pipe.second.reset();
    auto result = stream::run_engine(channel, std::move(config), &child);
    if (result.protocol_error) return 1;
    return result.child_status.value_or(1);
}

} // namespace

CallRequest make_call_request(uint32_t type, uint32_t domain, uint32_t port,
                              std::string_view cmdline, bool with_user) {
    CallRequest request;
    request.type = type;
    request.connect_domain = domain;
    request.connect_port = port;
    std::string error;
    request.command = services::parse_command(cmdline, with_user, &error);
    if (!request.command) {
        QLOG("invalid command line from dom0: {}", error);
        return request;
    }
    if (request.command->is_service) {
        auto paths = services::SearchPaths::from_environment();
        auto load = services::load_rpc_config(paths.config_dirs, *request.command);
        if (!load.ok) {
            QLOG("{}", load.error);
            request.config_failed = true;
        } else {
            request.config = load.config;
        }
    }
    request.user = services::effective_user(*request.command, request.config);
    return request;
}

namespace {

// Data vchan, handshake, then the call; shared by the handler process and the
// agent's own threads (in_process).
int serve_call(const CallRequest& request, const InProcessCall* in_process) {
    auto backend = transport::default_backend();
    auto channel = backend->connect(static_cast<int>(request.connect_domain),
                                    static_cast<int>(request.connect_port), kDataConnectTimeoutMs);
    if (!channel) {
        QLOG("data vchan connection to domain {} port {} failed", request.connect_domain,
             request.connect_port);
        return 1;
    }
    auto version = stream::handshake_data_channel(*channel, true, kDataConnectTimeoutMs);
    if (!version) return 1;
    HandlerTrace trace;
    if (io::trace_on()) {
        trace.token = io::trace_vchan_token(static_cast<uint32_t>(backend->own_domain()),
                                            request.connect_domain, request.connect_port);
        trace.stage("data-connected");
    }
    int status = request.type == MSG_JUST_EXEC
                     ? run_just_exec(*channel, request, trace)
                     : run_exec_cmdline(*channel, *version, request, trace, in_process);
    trace.stage("end", fmt::format("status={}", status));
    return status;
}

} // namespace

int run_call_handler(const CallRequest& request) {
    // io::spawn gave us default signal dispositions; a program that closed its
    // stdin must give EPIPE (P§5.6), not kill the handler before its EXIT_CODE.
    signal(SIGPIPE, SIG_IGN);
    // This process is the one that reacts to SIGUSR1 (AGENT.md §6).
    setenv("QREXEC_AGENT_PID", std::to_string(getpid()).c_str(), 1);
    return serve_call(request, nullptr);
}

int serve_call_in_process(const CallRequest& request, const InProcessCall& context) {
    // JUST_EXEC leaves its service running after the call: that needs a handler
    // process that exits (the service must not stay the agent's child).
    if (request.type == MSG_JUST_EXEC) return 1;
    return serve_call(request, &context);
}

} // namespace qrexec::agent
