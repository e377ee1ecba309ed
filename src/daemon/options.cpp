#include "daemon/options.h"

#include <getopt.h>

#include <cmath>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace qrexec::daemon {

std::string usage_text(const std::string& program) {
    return "usage: " + program +
           " [options] domainid domain-name [default user]\n"
           "Options:\n"
           "  -h, --help - display usage\n"
           "  -q, --quiet - quiet mode\n"
           "  --socket-dir=PATH - directory for the qrexec.* sockets (default /var/run/qubes)\n"
           "  -p PATH, --policy-program=PATH - fallback policy program\n"
           "  -D, --direct - run directly, do not daemonize, log to stderr\n"
           "  -u UUID, --uuid=UUID - domain UUID (mandatory)\n"
           "  --policy-socket=PATH - policy daemon socket (default /run/qubes/policy.sock)\n"
           "  --qrexec-client=PATH - qrexec-client used for calls to dom0\n"
           "  --policy-in-process - evaluate the policy inside the daemon (cached, reloaded\n"
           "      on change; also QREXEC_POLICY_IN_PROCESS=1)\n";
}

namespace {
enum LongOnly { kSocketDir = 256, kPolicySocket, kQrexecClient, kPolicyInProcess };
}

ParseOutcome parse_options(int argc, char* const argv[]) {
    static const option long_options[] = {
        {"help", no_argument, nullptr, 'h'},
        {"quiet", no_argument, nullptr, 'q'},
        {"socket-dir", required_argument, nullptr, kSocketDir},
        {"policy-program", required_argument, nullptr, 'p'},
        {"direct", no_argument, nullptr, 'D'},
        {"uuid", required_argument, nullptr, 'u'},
        {"policy-socket", required_argument, nullptr, kPolicySocket},
        {"qrexec-client", required_argument, nullptr, kQrexecClient},
        {"policy-in-process", no_argument, nullptr, kPolicyInProcess},
        {nullptr, 0, nullptr, 0},
    };
    ParseOutcome out;
    Options options;
    optind = 0; // full re-initialisation (parse may run more than once, e.g. in tests)
    opterr = 1;
    int opt;
    // getopt_long wants char**; it only permutes the pointer array.
    std::vector<char*> args(argv, argv + argc);
    args.push_back(nullptr);
    while ((opt = getopt_long(argc, args.data(), "hqp:Du:", long_options, nullptr)) != -1) {
        switch (opt) {
        case 'q':
            options.quiet = true;
            break;
        case 'p':
            options.policy_program = optarg;
            break;
        case 'D':
            options.direct = true;
            break;
        case 'u':
            options.uuid = optarg;
            break;
        case kSocketDir:
            options.socket_dir = optarg;
            break;
        case kPolicySocket:
            options.policy_socket = optarg;
            break;
        case kQrexecClient:
            options.qrexec_client = optarg;
            break;
        case kPolicyInProcess:
            options.policy_in_process = true;
            break;
        default: // -h, unknown option, missing argument
            out.exit_code = 1;
            out.show_usage = true;
            return out;
        }
    }
    int positional = argc - optind;
    if (positional < 2 || positional > 3) {
        out.exit_code = 1;
        out.show_usage = true;
        return out;
    }
    if (options.uuid.empty()) {
        out.exit_code = 1;
        out.show_usage = true;
        out.message = "Domain UUID option missing!";
        return out;
    }
    options.domid = std::atoi(args[static_cast<size_t>(optind)]);
    if (options.domid <= 0) {
        out.exit_code = 1;
        out.message = "domain id=0?";
        out.log_message = true;
        return out;
    }
    options.name = args[static_cast<size_t>(optind) + 1];
    if (positional == 3) options.default_user = args[static_cast<size_t>(optind) + 2];
    out.options = std::move(options);
    return out;
}

bool env_flag_enabled(const char* value) {
    if (!value) return false;
    std::string_view text(value);
    return text == "1" || text == "yes" || text == "true";
}

int startup_timeout_seconds(const char* value) {
    if (!value) return 60;
    char* end = nullptr;
    long seconds = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || seconds <= 0 || seconds > 86400 * 365) return 60;
    return static_cast<int>(seconds);
}

std::optional<std::chrono::milliseconds> seconds_from_environment(const char* value) {
    if (!value) return std::nullopt;
    char* end = nullptr;
    double seconds = std::strtod(value, &end);
    if (end == value || *end != '\0' || !std::isfinite(seconds) || seconds <= 0 || seconds > 86400)
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

Timeouts timeouts_from_environment(const char* override_value) {
    Timeouts timeouts;
    auto ms = seconds_from_environment(override_value);
    if (!ms) return timeouts;
    timeouts.policy = timeouts.qubesd = timeouts.target = timeouts.dom0_client = *ms;
    return timeouts;
}

} // namespace qrexec::daemon
