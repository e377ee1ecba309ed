#include "client/options.h"

#include <getopt.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace qrexec::client {
namespace {

enum LongOnly { kOptSocketDir = 0x100, kOptUseStdinSocket };

const option kLongOptions[] = {
    {"help", no_argument, nullptr, 'h'},
    {"no-exit-code", no_argument, nullptr, 'E'},
    {"prefix-data", required_argument, nullptr, 'p'},
    {"socket-dir", required_argument, nullptr, kOptSocketDir},
    {"use-stdin-socket", no_argument, nullptr, kOptUseStdinSocket},
    {nullptr, 0, nullptr, 0},
};

constexpr size_t kMaxRequestIdLen = 31;

// "[P]" messages of DAEMON.md §7.1 carry the program name.
void prefixed(const std::string& program, const std::string& message) {
    fmt::print(stderr, "{}: {}\n", program, message);
}

ParsedOptions leave(int code) {
    return ParsedOptions{std::nullopt, code};
}

// strtol-style non-negative int that must start with a digit; what = text for messages.
std::optional<int> parse_number(const std::string& program, const char* text, const char* what) {
    if (!(*text >= '0' && *text <= '9')) {
        prefixed(program, fmt::format("{} '{}' does not start with an ASCII digit", what, text));
        return std::nullopt;
    }
    errno = 0;
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    if (*end != '\0') {
        prefixed(program, fmt::format("trailing junk '{}' after {}", end, what));
        return std::nullopt;
    }
    if (errno == ERANGE || value < 0 || value > INT_MAX) {
        prefixed(program, fmt::format("{} '{}' out of range", what, text));
        return std::nullopt;
    }
    return static_cast<int>(value);
}

// -c REQID,SRC_NAME,SRC_ID; returns the exit code on error.
std::optional<ConnectRequest> parse_connect(const std::string& program, const std::string& text,
                                            int& exit_code) {
    exit_code = 1;
    auto first = text.find(',');
    auto second = first == std::string::npos ? std::string::npos : text.find(',', first + 1);
    if (second == std::string::npos) {
        fmt::print(stderr, "Invalid -c parameter (should be: \"-c "
                           "request_id,src_domain_name,src_domain_id\")\n");
        return std::nullopt;
    }
    ConnectRequest request;
    request.request_id = text.substr(0, first);
    request.source_name = text.substr(first + 1, second - first - 1);
    if (request.request_id.size() > kMaxRequestIdLen) {
        prefixed(program, "Invalid -c parameter (request_id too long, max 31)");
        return std::nullopt;
    }
    std::string id_text = text.substr(second + 1);
    auto id = parse_number(program, id_text.c_str(), "source domain ID");
    if (!id) return std::nullopt;
    request.source_id = *id;
    return request;
}

// --use-stdin-socket checks (exit 2 on error).
bool check_stdin_socket(const std::string& program) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        prefixed(program, "--use-stdin-socket passed, but stdin not a socket");
        return false;
    }
    if (type != SOCK_STREAM) {
        prefixed(program, fmt::format("stdin was a socket of type {}, not SOCK_STREAM ({})", type,
                                      SOCK_STREAM));
        return false;
    }
    return true;
}

} // namespace

bool is_dom0_name(std::string_view name) {
    return name == "dom0" || name == "@adminvm" ||
           name == "uuid:00000000-0000-0000-0000-000000000000";
}

void print_usage(const std::string& program, bool to_stderr) {
    FILE* out = to_stderr ? stderr : stdout;
    fmt::print(out,
               "usage: {} [options] -d domain_name [-l local_prog|-e|-c "
               "<request-id,src-domain-name,src-domain-id>] remote_cmdline\n"
               "Options:\n"
               "  -h, --help - display this usage\n"
               "  -d DOMAIN - target: a VM name, uuid:<UUID>, or dom0/@adminvm\n"
               "  -l LOCAL_CMD - run LOCAL_CMD in dom0 and connect it to the remote program\n"
               "  -e - start the command without I/O and exit\n"
               "  -E, --no-exit-code - exit 0 instead of with the remote exit code\n"
               "  -c REQID,SRC_NAME,SRC_ID - answer a service request from a VM\n"
               "  -p DATA, --prefix-data=DATA - send DATA before the input\n"
               "  -t - replace terminal-unsafe bytes in remote stdout with _\n"
               "  -T - replace terminal-unsafe bytes in remote stderr with _\n"
               "  -w SECONDS - data connection timeout, default 10 (0 = no timeout)\n"
               "  -W - with -c to a VM: wait until the call finishes\n"
               "  -k - kill the domain before exiting\n"
               "  --socket-dir=PATH - directory of the qrexec daemon sockets "
               "(default /var/run/qubes)\n"
               "  --use-stdin-socket - use fd 0 (a stream socket) for both input and output\n",
               program);
}

ParsedOptions parse_client_options(int argc, char** argv) {
    ClientOptions opts;
    if (argc > 0 && argv[0]) {
        std::string_view name = argv[0];
        auto slash = name.rfind('/');
        opts.program = std::string(slash == std::string_view::npos ? name : name.substr(slash + 1));
    }
    const std::string& program = opts.program;
    bool prefix_seen = false;
    optind = 0; // full getopt reset (glibc), so the parser can run more than once
    int c;
    while ((c = getopt_long(argc, argv, "hd:l:eEc:p:tTw:Wk", kLongOptions, nullptr)) != -1) {
        switch (c) {
        case 'd':
            opts.domain = optarg;
            break;
        case 'l':
            opts.local_command = optarg;
            break;
        case 'e':
            opts.just_exec = true;
            break;
        case 'E':
            opts.no_exit_code = true;
            break;
        case 'c': {
            if (opts.connect) {
                prefixed(program, "ERROR: -c passed more than once");
                print_usage(program, true);
                return leave(1);
            }
            int code = 1;
            auto request = parse_connect(program, optarg, code);
            if (!request) {
                print_usage(program, true);
                return leave(code);
            }
            if (is_dom0_name(request->source_name) || request->source_id == 0) {
                prefixed(program, "ERROR: -c cannot be used for requests to dom0");
                print_usage(program, true);
                return leave(1);
            }
            opts.connect = std::move(*request);
            break;
        }
        case 'p':
            if (prefix_seen) {
                print_usage(program, true);
                return leave(2);
            }
            prefix_seen = true;
            opts.prefix_data = optarg;
            break;
        case 't':
            opts.filter_stdout = true;
            break;
        case 'T':
            opts.filter_stderr = true;
            break;
        case 'w': {
            auto value = parse_number(program, optarg, "connection timeout");
            if (!value) {
                print_usage(program, true);
                return leave(1);
            }
            opts.timeout_seconds = *value;
            break;
        }
        case 'W':
            opts.wait = true;
            break;
        case 'k':
            opts.kill = true;
            break;
        case kOptSocketDir:
            opts.socket_dir = optarg;
            break;
        case kOptUseStdinSocket:
            if (opts.use_stdin_socket) {
                prefixed(program, "--use-stdin-socket passed twice");
                return leave(2);
            }
            if (!check_stdin_socket(program)) return leave(2);
            opts.use_stdin_socket = true;
            break;
        case 'h':
        default:
            // Upstream quirk: unknown options and missing arguments also exit 0.
            print_usage(program, false);
            return leave(0);
        }
    }
    if (optind < argc) opts.command = argv[optind];
    if (opts.domain.empty() || optind >= argc) {
        print_usage(program, true);
        return leave(1);
    }
    int modes = (opts.just_exec ? 1 : 0) + (opts.local_command ? 1 : 0) + (opts.connect ? 1 : 0);
    if (modes > 1) {
        fmt::print(stderr, "ERROR: only one of -e, -l, -c can be specified\n");
        print_usage(program, true);
        return leave(1);
    }
    if (opts.local_command && opts.use_stdin_socket) {
        fmt::print(stderr, "ERROR: at most one of -l and --use-stdin-socket can be specified\n");
        print_usage(program, true);
        return leave(1);
    }
    if (opts.connect && opts.connect->request_id.empty()) {
        prefixed(program, "ERROR: request ID cannot be empty");
        print_usage(program, true);
        return leave(1);
    }
    return ParsedOptions{std::move(opts), 0};
}

} // namespace qrexec::client
