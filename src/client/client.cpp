#include "client/client.h"

#include "client/daemon_client.h"
#include "client/execute_in_vm.h"
#include "client/local_process.h"
#include "io/log.h"
#include "io/log_field.h"
#include "io/trace.h"
#include "protocol/messages.h"
#include "qubesd/disposable.h"
#include "services/exec.h"
#include "services/lookup.h"
#include "services/rpc_config.h"
#include "services/session.h"
#include "stream/engine.h"
#include "transport/vchan.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

namespace qrexec::client {

using namespace qrexec::protocol;

namespace {

constexpr int kExitVmToVmFailure = 137;
constexpr size_t kDataRingSize = 65536;
constexpr std::string_view kDefaultUserPrefix = "DEFAULT:";

int timeout_ms(const ClientOptions& options) {
    return options.timeout_seconds == 0 ? -1 : options.timeout_seconds * 1000;
}

void send_frame(transport::Channel& channel, uint32_t type, std::span<const std::byte> payload) {
    auto frame = encode_frame(type, payload);
    channel.send_all(frame, 10000);
}

// DAEMON.md §7.3 mode A step 5: the fixed sequence after a failed prepare.
void report_prepare_failure(transport::Channel& channel, int code) {
    send_frame(channel, MSG_DATA_STDERR, {});
    send_frame(channel, MSG_DATA_STDOUT, {});
    send_frame(channel, MSG_DATA_EXIT_CODE, encode_exit_code(code));
}

void kill_domain(const std::string& domain) {
    auto killed = qubesd::kill_vm(qubesd::socket_path_from_env(), domain);
    if (!killed.ok) QLOG("Failed to kill domain {}: {}", io::log_field(domain), killed.error);
}

int dom0_to_vm_call(const ClientOptions& options) {
    io::Fd daemon = connect_to_daemon(options.socket_dir, options.domain);
    if (!daemon) return kExitProblem;
    std::string body = options.command;
    body.push_back('\0');
    if (kExecParamsSize + body.size() > kMaxQrexecCmdLen) {
        QLOG("Command too long ({} bytes)", body.size());
        return kExitProblem;
    }
    uint32_t type = options.just_exec ? MSG_JUST_EXEC : MSG_EXEC_CMDLINE;
    if (!send_daemon_request(daemon.get(), type, ExecParams{0, 0}, as_bytes(body)))
        return kExitProblem;
    auto reply = read_daemon_reply(daemon.get(), type);
    if (!reply) return kExitProblem;

    // Listen at once: the agent's handler may connect as soon as the daemon forwarded.
    auto backend = transport::default_backend();
    auto server = backend->listen(static_cast<int>(reply->connect_domain),
                                  static_cast<int>(reply->connect_port), kDataRingSize);
    if (!server) {
        QLOG("Failed to start the data vchan server");
        return kExitProblem;
    }
    std::optional<LocalProcess> local;
    if (options.local_command) local = start_local_process(*options.local_command, options.domain);

    std::unique_ptr<transport::Channel> channel;
    try {
        channel = server->wait_for_client(timeout_ms(options));
    } catch (const std::exception& e) {
        QLOG("Data vchan accept failed: {}", e.what());
    }
    if (!channel) {
        QLOG("qrexec connection timeout");
        return kExitProblem;
    }
    auto version = stream::handshake_data_channel(*channel, true, timeout_ms(options));
    if (!version) return kExitProblem;
    if (local && local->failure) return local->failure; // nothing sent (not upstream's crash)

    stream::EngineConfig config;
    if (io::trace_on()) {
        config.trace_tokens = fmt::format("qc:{}", getpid());
        io::trace_line("data-connected",
                       config.trace_tokens + " " +
                           io::trace_vchan_token(static_cast<uint32_t>(backend->own_domain()),
                                                 reply->connect_domain, reply->connect_port));
    }
    config.role = stream::Role::Client;
    config.version = *version;
    if (local) {
        config.input = {local->input.release(), stream::CloseMethod::Shutdown};
        config.output = {local->output.release(), stream::CloseMethod::Shutdown};
    } else if (options.use_stdin_socket) {
        config.input = {0, stream::CloseMethod::Shutdown};
        config.output = {0, stream::CloseMethod::Shutdown};
    } else {
        config.input = {0, stream::CloseMethod::Close};
        config.output = {1, stream::CloseMethod::Close};
    }
    // A duplicate, so our own stderr stays usable for log lines after the call.
    config.error = {fcntl(2, F_DUPFD_CLOEXEC, 3), stream::CloseMethod::Close};
    config.prefix_data = options.prefix_data.value_or("");
    config.filter_stdout = options.filter_stdout;
    config.filter_stderr = options.filter_stderr;
    io::Child* child = local && local->child ? &*local->child : nullptr;
    auto result = stream::run_engine(*channel, std::move(config), child);
    if (result.protocol_error) return 1;
    if (!result.exit_code) return 255;
    if (options.no_exit_code) return 0;
    if (*result.exit_code != 0) return *result.exit_code;
    return result.child_status.value_or(0);
}

} // namespace

int run_vm_to_dom0(const ClientOptions& options) {
    const ConnectRequest& request = *options.connect;
    io::Fd daemon = connect_to_daemon(options.socket_dir, std::to_string(request.source_id));
    if (!daemon) return kExitProblem;
    if (!send_daemon_request(daemon.get(), MSG_SERVICE_CONNECT, ExecParams{0, 0},
                             ident_body(request.request_id)))
        return kExitProblem;
    auto reply = read_daemon_reply(daemon.get(), MSG_SERVICE_CONNECT);
    if (!reply) return kExitProblem;

    // The service starts before the data vchan is connected (DAEMON.md §7.3 A.3).
    LocalProcess local = start_local_process(options.command, request.source_name);

    auto backend = transport::default_backend();
    auto channel = backend->connect(static_cast<int>(reply->connect_domain),
                                    static_cast<int>(reply->connect_port), timeout_ms(options));
    if (!channel) {
        QLOG("Data vchan connection failed");
        return kExitProblem;
    }
    auto version = stream::handshake_data_channel(*channel, false, timeout_ms(options));
    if (!version) return kExitProblem;
    if (local.failure) {
        report_prepare_failure(*channel, local.failure);
        return local.failure;
    }
    stream::EngineConfig config;
    config.role = stream::Role::Service;
    config.version = *version;
    config.input = {local.input.release(), stream::CloseMethod::Shutdown};
    config.output = {local.output.release(), stream::CloseMethod::Shutdown};
    config.prefix_data = options.prefix_data.value_or("");
    if (local.is_socket_service) {
        config.exit_on_client_eof = local.config.exit_on_client_eof;
        config.exit_on_service_eof = local.config.exit_on_service_eof;
    }
    io::Child* child = local.child ? &*local.child : nullptr;
    auto result = stream::run_engine(*channel, std::move(config), child);
    if (options.no_exit_code) return 0;
    if (result.exit_code) return *result.exit_code;
    if (result.child_status) return *result.child_status;
    return result.protocol_error ? 1 : 0;
}

int run_dom0_to_dom0(const ClientOptions& options) {
    const std::string& program = options.program;
    if (options.local_command) {
        fmt::print(stderr, "{}: dom0 -> dom0 qrexec calls with LOCAL_COMMAND not yet implemented\n",
                   program);
        fmt::print(stderr, "{}: please file an issue if you need this\n", program);
        return kExitProblem;
    }
    if (!std::string_view(options.command).starts_with(kDefaultUserPrefix)) {
        fmt::print(stderr, "{}: dom0 -> dom0 commands must be prefixed with DEFAULT:\n", program);
        return kExitProblem;
    }
    std::string error;
    auto parsed = services::parse_command(options.command, true, &error);
    if (!parsed || !parsed->is_service) {
        QLOG("dom0 -> dom0 command is not a valid QUBESRPC call: {}", options.command);
        return kExitProblem;
    }
    auto paths = services::SearchPaths::from_environment();
    if (!parsed->nogui) {
        auto load = services::load_rpc_config(paths.config_dirs, *parsed);
        if (!load.ok) {
            QLOG("{}", load.error);
            return kExitProblem;
        }
        if (load.config.wait_for_session)
            services::run_wait_for_session_sync(paths.service_dirs, parsed->source_domain);
    }
    auto lookup = services::find_service(paths.service_dirs, *parsed);
    if (lookup.status == services::LookupStatus::NotFound) {
        QLOG("Service not found: {}", parsed->descriptor);
        return kExitNotFound;
    }
    if (lookup.status == services::LookupStatus::Error) {
        QLOG("Error looking up service {}", parsed->descriptor);
        return kExitProblem;
    }
    if (lookup.kind != services::ServiceKind::Executable) {
        QLOG("Service {} is not executable (sockets are not supported for dom0 -> dom0)",
             lookup.path);
        return kExitProblem;
    }
    services::exec_service(lookup.path, *parsed, services::ExecStyle::Direct);
}

int run_vm_to_vm(const ClientOptions& options) {
    ExecuteInVmRequest request;
    request.socket_dir = options.socket_dir;
    request.destination = options.domain;
    request.command = options.command;
    request.calling_domid = options.connect->source_id;
    request.ident = options.connect->request_id;
    request.autostart = false;
    request.just_exec = options.just_exec;
    request.wait = options.wait;
    return execute_in_vm(request) ? 0 : kExitVmToVmFailure;
}

int run_dom0_to_vm(const ClientOptions& options) {
    if (io::trace_on()) io::trace_line("start", fmt::format("+qc:{}", getpid()));
    int code = dom0_to_vm_call(options);
    if (io::trace_on()) io::trace_line("end", fmt::format("qc:{} status={}", getpid(), code));
    if (options.kill) kill_domain(options.domain);
    return code;
}

int run_client(const ClientOptions& options) {
    if (is_dom0_name(options.domain))
        return options.connect ? run_vm_to_dom0(options) : run_dom0_to_dom0(options);
    return options.connect ? run_vm_to_vm(options) : run_dom0_to_vm(options);
}

int qrexec_client_main(int argc, char** argv) {
    io::require_standard_fds("qrexec-client");
    signal(SIGPIPE, SIG_IGN);
    auto parsed = parse_client_options(argc, argv);
    if (!parsed.options) return parsed.exit_code;
    return run_client(*parsed.options);
}

} // namespace qrexec::client
