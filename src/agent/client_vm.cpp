#include "agent/client_vm.h"

#include "agent/agent.h"

#include "io/fd.h"
#include "io/log.h"
#include "io/process.h"
#include "io/trace.h"
#include "io/unix_address.h"
#include "protocol/messages.h"
#include "stream/engine.h"
#include "transport/vchan.h"

#include <getopt.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::agent {
namespace {

using namespace qrexec::protocol;

constexpr int kDefaultBufferSize = 65536;
constexpr int kVchanConnectTimeoutMs = 120'000;

struct ClientVmOptions {
    std::string agent_socket = kDefaultAgentSocket;
    std::optional<std::string> prefix_data;
    std::optional<std::string> source_qube;
    std::optional<bool> filter_stdout;
    std::optional<bool> filter_stderr;
    bool use_stdin_socket = false;
    int buffer_size = kDefaultBufferSize;
    std::string target;
    std::string service;
    std::vector<std::string> local_program; // path + args
};

void print_usage(FILE* out, const char* argv0) {
    std::fprintf(out,
                 "usage: %s [options] target_vmname program_ident [local_program "
                 "[local program arguments]]\n"
                 "ClientVmOptions:\n"
                 "  --buffer-size=BUFFER_SIZE - minimum vchan buffer size (default: 64k)\n"
                 "  -t, --filter-escape-chars-stdout - filter non-ASCII and control characters "
                 "on stdout (default if stdout is a terminal)\n"
                 "  -T, --filter-escape-chars-stderr - filter non-ASCII and control characters "
                 "on stderr (default if stderr is a terminal)\n"
                 "  --no-filter-escape-chars-stdout - opposite to --filter-escape-chars-stdout\n"
                 "  --no-filter-escape-chars-stderr - opposite to --filter-escape-chars-stderr\n"
                 "  --agent-socket=PATH - path to connect to, default: %s\n"
                 "  -p PREFIX-DATA, --prefix-data=PREFIX-DATA - send the given data before the "
                 "provided stdin (can only be used once)\n"
                 "  --use-stdin-socket - use stdin as a socket for both input and output\n",
                 argv0, kDefaultAgentSocket);
    // Upstream prints this line on stderr even for --help; scripts may rely on stdout's content.
    std::fprintf(stderr, "  -s SOURCE_QUBE, --source-qube=SOURCE_QUBE - request the call to be "
                         "made on behalf of SOURCE_QUBE (relayed calls)\n");
}

enum LongOnly {
    kBufferSize = 1000,
    kNoFilterStdout,
    kNoFilterStderr,
    kUseStdinSocket,
};

// Returns the exit code on a usage problem, nullopt when options are fine.
std::optional<int> parse_client_vm_options(int argc, char** argv, ClientVmOptions& opts) {
    static const option long_options[] = {
        {"buffer-size", required_argument, nullptr, kBufferSize},
        {"filter-escape-chars-stdout", no_argument, nullptr, 't'},
        {"filter-escape-chars-stderr", no_argument, nullptr, 'T'},
        {"no-filter-escape-chars-stdout", no_argument, nullptr, kNoFilterStdout},
        {"no-filter-escape-chars-stderr", no_argument, nullptr, kNoFilterStderr},
        {"agent-socket", required_argument, nullptr, 'a'},
        {"prefix-data", required_argument, nullptr, 'p'},
        {"use-stdin-socket", no_argument, nullptr, kUseStdinSocket},
        {"source-qube", required_argument, nullptr, 's'},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "+tTa:p:s:h", long_options, nullptr)) != -1) {
        switch (opt) {
        case kBufferSize: {
            const char* text = optarg;
            if (text[0] < '0' || text[0] > '9') {
                QLOG("Bad buffer size: does not begin with a number");
                return 1;
            }
            errno = 0;
            char* end = nullptr;
            unsigned long value = std::strtoul(text, &end, 0);
            if (*end != '\0') {
                QLOG("Bad buffer size: trailing junk");
                return 1;
            }
            if (errno != 0 || value > INT_MAX) {
                QLOG("Bad buffer size: too large");
                return 1;
            }
            opts.buffer_size = value == 0 ? kDefaultBufferSize : static_cast<int>(value);
            break;
        }
        case 't':
            opts.filter_stdout = true;
            break;
        case 'T':
            opts.filter_stderr = true;
            break;
        case kNoFilterStdout:
            opts.filter_stdout = false;
            break;
        case kNoFilterStderr:
            opts.filter_stderr = false;
            break;
        case 'a':
            opts.agent_socket = optarg;
            break;
        case 'p':
            if (opts.prefix_data) {
                print_usage(stderr, argv[0]);
                return 2;
            }
            opts.prefix_data = optarg;
            break;
        case 's':
            if (opts.source_qube) {
                print_usage(stderr, argv[0]);
                return 2;
            }
            opts.source_qube = optarg;
            break;
        case kUseStdinSocket:
            if (opts.use_stdin_socket) {
                std::fprintf(stderr, "qrexec-client-vm: --use-stdin-socket passed twice\n");
                return 2;
            }
            opts.use_stdin_socket = true;
            break;
        case 'h':
            print_usage(stdout, argv[0]);
            return 0;
        default:
            print_usage(stderr, argv[0]);
            return 2;
        }
    }
    if (argc - optind < 2) {
        print_usage(stderr, argv[0]);
        return 2;
    }
    opts.target = argv[optind];
    opts.service = argv[optind + 1];
    for (int i = optind + 2; i < argc; ++i)
        opts.local_program.emplace_back(argv[i]);
    if (opts.use_stdin_socket) {
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
            std::fprintf(stderr, "qrexec-client-vm: --use-stdin-socket passed, but stdin not a "
                                 "socket\n");
            return 2;
        }
        if (type != SOCK_STREAM) {
            std::fprintf(stderr,
                         "qrexec-client-vm: stdin was a socket of type %d, not SOCK_STREAM (%d)\n",
                         type, SOCK_STREAM);
            return 2;
        }
        if (!opts.local_program.empty()) {
            std::fprintf(stderr, "qrexec-client-vm: cannot spawn a local process with "
                                 "--use-stdin-socket\n");
            print_usage(stderr, argv[0]);
            return 2;
        }
    }
    return std::nullopt;
}

io::Fd connect_agent(const std::string& path) {
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) {
        QLOG("agent socket path too long: {}", path);
        return {};
    }
    io::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), addr->get(), addr->size()) != 0) {
        QLOG_ERRNO("connect {}", path);
        return {};
    }
    return fd;
}

std::vector<std::byte> build_request(const ClientVmOptions& opts) {
    TriggerRequest request;
    request.type = MSG_TRIGGER_SERVICE4;
    request.source_domain = opts.source_qube.value_or("");
    request.target_domain = opts.target;
    // Legacy "$dispvm" style names use '$' where policy uses '@'.
    for (auto& c : request.target_domain)
        if (c == '$') c = '@';
    request.ident = make_ident("SOCKET");
    request.service_name = opts.service;
    return encode_frame(MSG_TRIGGER_SERVICE4, encode_trigger(request));
}

struct LocalProgram {
    io::Child child;
    io::Fd to_program;   // our end of its stdin
    io::Fd from_program; // our end of its stdout
};

LocalProgram start_local_program(const std::vector<std::string>& argv_text) {
    auto in = io::make_socketpair();
    auto out = io::make_socketpair();
    bool pass_stderr = std::getenv("PASS_LOCAL_STDERR") != nullptr;
    auto child = io::spawn({}, [&]() -> int {
        // Let the program reach the caller's original stdio if it wants to.
        int saved0 = dup(0), saved1 = dup(1);
        setenv("SAVED_FD_0", std::to_string(saved0).c_str(), 1);
        setenv("SAVED_FD_1", std::to_string(saved1).c_str(), 1);
        if (pass_stderr) setenv("SAVED_FD_2", std::to_string(dup(2)).c_str(), 1);
        dup2(in.second.get(), 0);
        dup2(out.second.get(), 1);
        // argv[0] is the program's basename; the path is used as given (no PATH search).
        auto args = argv_text;
        args[0] = argv_text[0].substr(argv_text[0].rfind('/') + 1);
        io::exec_program(argv_text[0], args);
        std::fprintf(stderr, "qrexec-client-vm: exec %s: %s\n", argv_text[0].c_str(),
                     std::strerror(errno));
        return 255;
    });
    return {std::move(child), std::move(in.first), std::move(out.first)};
}

// One call; `trace` is this process' trace token (empty: not tracing).
int run_call(const ClientVmOptions& opts, const std::string& trace) {
    io::Fd agent = connect_agent(opts.agent_socket);
    if (!agent) return 1;
    // Traced before the write: the agent may log its receipt before write() returns.
    if (!trace.empty()) io::trace_line("trigger-sent", trace);
    if (!io::write_all(agent.get(), build_request(opts))) {
        QLOG_ERRNO("failed to send the request to the agent");
        return 1;
    }
    std::array<std::byte, kExecParamsSize> answer{};
    ssize_t got = io::read_all(agent.get(), answer);
    // The agent closes the connection to refuse (S6). If it rejected the request
    // before reading all of it, the kernel reports that close as ECONNRESET.
    if (got == 0 || (got < 0 && errno == ECONNRESET)) {
        if (!trace.empty()) io::trace_line("refused", trace);
        std::fputs("Request refused\n", stderr);
        return kExitRefused;
    }
    auto decoded =
        got == static_cast<ssize_t>(answer.size()) ? decode_exec_params(answer) : std::nullopt;
    if (!decoded) {
        QLOG("failed to read the agent's answer");
        return 1;
    }
    auto params = *decoded;

    std::optional<LocalProgram> local;
    if (!opts.local_program.empty()) {
        // The program may switch us to single-socket mode with SIGUSR1 (AGENT.md §6).
        stream::block_sigusr1();
        setenv("QREXEC_AGENT_PID", std::to_string(getpid()).c_str(), 1);
        local = start_local_program(opts.local_program);
    }

    auto backend = transport::default_backend();
    auto server = backend->listen(static_cast<int>(params.connect_domain),
                                  static_cast<int>(params.connect_port),
                                  static_cast<size_t>(opts.buffer_size));
    if (!server) return 1;
    auto channel = server->wait_for_client(kVchanConnectTimeoutMs);
    server.reset();
    if (!channel) {
        QLOG("timeout waiting for the service to connect the data vchan");
        return 1;
    }
    auto version = stream::handshake_data_channel(*channel, true, kVchanConnectTimeoutMs);
    if (!version) return 1;

    stream::EngineConfig config;
    if (!trace.empty()) {
        config.trace_tokens = trace;
        io::trace_line("data-connected",
                       trace + " " +
                           io::trace_vchan_token(static_cast<uint32_t>(backend->own_domain()),
                                                 params.connect_domain, params.connect_port));
    }
    config.role = stream::Role::Client;
    config.version = *version;
    config.prefix_data = opts.prefix_data.value_or("");
    config.filter_stdout = opts.filter_stdout.value_or(!local && isatty(1));
    config.filter_stderr = opts.filter_stderr.value_or(isatty(2) != 0);
    config.error = {2, stream::CloseMethod::Close};
    if (local) {
        config.input = {local->from_program.release(), stream::CloseMethod::Shutdown};
        config.output = {local->to_program.release(), stream::CloseMethod::Shutdown};
        config.single_socket_on_sigusr1 = true;
    } else if (opts.use_stdin_socket) {
        config.input = {0, stream::CloseMethod::Shutdown};
        config.output = {0, stream::CloseMethod::Shutdown};
    } else {
        config.input = {0, stream::CloseMethod::Close};
        config.output = {1, stream::CloseMethod::Close};
    }
    auto result = stream::run_engine(*channel, std::move(config), local ? &local->child : nullptr);
    if (result.protocol_error && !result.exit_code) return 1;
    if (!result.exit_code) return 255;
    if (*result.exit_code != 0) return *result.exit_code;
    return result.child_status.value_or(0);
}

} // namespace

int client_vm_main(int argc, char** argv) {
    io::require_standard_fds("qrexec-client-vm");
    signal(SIGPIPE, SIG_IGN);
    ClientVmOptions opts;
    if (auto code = parse_client_vm_options(argc, argv, opts)) return *code;
    if (!io::trace_on()) return run_call(opts, {});
    std::string token = fmt::format("cvm:{}", getpid());
    io::trace_line("start", "+" + token);
    int status = run_call(opts, token);
    io::trace_line("end", fmt::format("{} status={}", token, status));
    return status;
}

} // namespace qrexec::agent
