#include "client/local_process.h"

#include "io/log.h"
#include "protocol/messages.h"
#include "services/exec.h"
#include "services/prepare.h"
#include "services/session.h"

#include <cstdlib>

namespace qrexec::client {

using protocol::kExitProblem;

LocalProcess start_local_process(const std::string& command, const std::string& remote_domain) {
    LocalProcess local;
    std::string error;
    auto parsed = services::parse_command(command, false, &error);
    if (!parsed) {
        QLOG("Invalid command '{}': {}", command, error);
        local.failure = kExitProblem;
        return local;
    }
    auto paths = services::SearchPaths::from_environment();
    if (parsed->is_service && !parsed->nogui) {
        auto load = services::load_rpc_config(paths.config_dirs, *parsed);
        if (!load.ok) {
            QLOG("{}", load.error);
            local.failure = kExitProblem;
            return local;
        }
        local.config = load.config;
        if (local.config.wait_for_session)
            services::run_wait_for_session_sync(paths.service_dirs, parsed->source_domain);
    }
    auto prepared = services::prepare_call(*parsed, paths, local.config);
    if (!prepared.ok()) {
        local.failure = prepared.failure;
        return local;
    }
    auto& call = *prepared.call;
    if (call.kind == services::CallKind::Socket || call.kind == services::CallKind::Tcp) {
        local.is_socket_service = true;
        local.output = io::Fd(dup(call.socket.get()));
        local.input = std::move(call.socket);
        if (!local.output) {
            QLOG_ERRNO("dup");
            local.failure = kExitProblem;
        }
        return local;
    }
    auto stdin_pair = io::make_socketpair();
    auto stdout_pair = io::make_socketpair();
    const services::ParsedCommand& cmd = *parsed;
    local.child = io::spawn({stdin_pair.second.get(), stdout_pair.second.get(), -1}, [&]() -> int {
        io::close_fds_from(3);
        setenv("QREXEC_REMOTE_DOMAIN", remote_domain.c_str(), 1);
        if (call.kind == services::CallKind::Executable)
            services::exec_service(call.path, cmd, services::ExecStyle::Direct);
        services::exec_shell_command_argv0(cmd.command, "/bin/bash", "bash");
    });
    local.output = std::move(stdin_pair.first);
    local.input = std::move(stdout_pair.first);
    return local;
}

} // namespace qrexec::client
