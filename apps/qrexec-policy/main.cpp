// qrexec-policy explain SOURCE TARGET SERVICE+ARG: the decision, the rule that made it
// (file:line) and why each earlier rule did not match.
#include "io/log.h"
#include "policy/cli.h"
#include "policy/tools.h"

#include <getopt.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace qrexec;
using namespace qrexec::policy;

namespace {
constexpr const char* kUsage =
    "usage: qrexec-policy explain [--policy-dir DIR] [--system-info FILE]\n"
    "                             [--requested-source VM] [--assume-yes-for-ask]\n"
    "                             [--just-evaluate] SOURCE TARGET SERVICE+ARG\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fputs(kUsage, stderr);
    std::fprintf(stderr, "qrexec-policy: error: %s\n", message.c_str());
    std::exit(2);
}
} // namespace

int main(int argc, char** argv) {
    io::require_standard_fds("qrexec-policy");
    enum { OPT_DIR = 1000, OPT_SYSINFO, OPT_RS, OPT_ASSUME, OPT_JUST };
    static const option longopts[] = {
        {"help", no_argument, nullptr, 'h'},
        {"policy-dir", required_argument, nullptr, OPT_DIR},
        {"system-info", required_argument, nullptr, OPT_SYSINFO},
        {"requested-source", required_argument, nullptr, OPT_RS},
        {"assume-yes-for-ask", no_argument, nullptr, OPT_ASSUME},
        {"just-evaluate", no_argument, nullptr, OPT_JUST},
        {nullptr, 0, nullptr, 0},
    };
    std::vector<std::string> dirs;
    std::string system_info;
    Request request;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, nullptr)) != -1) {
        switch (c) {
        case 'h':
            std::fputs(kUsage, stdout);
            return 0;
        case OPT_DIR:
            append_policy_dirs(dirs, optarg);
            break;
        case OPT_SYSINFO:
            system_info = optarg;
            break;
        case OPT_RS:
            request.requested_source = optarg;
            break;
        case OPT_ASSUME:
            request.assume_yes_for_ask = true;
            break;
        case OPT_JUST:
            request.just_evaluate = true;
            break;
        case ':':
            usage_error(std::string("argument ") + argv[optind - 1] + ": expected one argument");
        default:
            usage_error(std::string("unrecognized arguments: ") + argv[optind - 1]);
        }
    }
    std::vector<std::string> args(argv + optind, argv + argc);
    if (args.empty() || args[0] != "explain") usage_error("the only command is 'explain'");
    if (args.size() != 4) usage_error("explain needs SOURCE TARGET SERVICE+ARG");
    request.source = args[1];
    request.intended_target = args[2];
    request.service_and_arg = args[3];

    FsLoader loader;
    Policy policy = load_policy(loader, policy_paths_from(dirs));
    auto source = SystemInfoSource::from_option_or_env(system_info);
    std::string error;
    auto system = source.get(&error);
    if (!system) {
        std::fprintf(stderr, "qrexec-policy: %s\n", error.c_str());
        return 1;
    }
    std::string text = explain_text(policy, *system, request);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}
