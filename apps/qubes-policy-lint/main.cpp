// qubes-policy-lint: checks policy files, printing file:line diagnostics; exit status 1
// when there is any error.
#include "io/log.h"
#include "policy/cli.h"
#include "policy/parser.h"
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
    "usage: qubes-policy-lint [-h] [--policy-dir DIR] [--legacy-dir DIR] [--no-warnings]\n"
    "                         [FILE ...]\n"
    "Without FILEs the whole policy (the policy directories) is checked.\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fputs(kUsage, stderr);
    std::fprintf(stderr, "qubes-policy-lint: error: %s\n", message.c_str());
    std::exit(2);
}
} // namespace

int main(int argc, char** argv) {
    io::require_standard_fds("qubes-policy-lint");
    enum { OPT_DIR = 1000, OPT_LEGACY, OPT_NOWARN };
    static const option longopts[] = {
        {"help", no_argument, nullptr, 'h'},
        {"policy-dir", required_argument, nullptr, OPT_DIR},
        {"legacy-dir", required_argument, nullptr, OPT_LEGACY},
        {"no-warnings", no_argument, nullptr, OPT_NOWARN},
        {nullptr, 0, nullptr, 0},
    };
    std::vector<std::string> dirs;
    std::string legacy;
    bool warnings = true;
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
        case OPT_LEGACY:
            legacy = optarg;
            break;
        case OPT_NOWARN:
            warnings = false;
            break;
        case ':':
            usage_error(std::string("argument ") + argv[optind - 1] + ": expected one argument");
        default:
            usage_error(std::string("unrecognized arguments: ") + argv[optind - 1]);
        }
    }
    PolicyPaths paths = policy_paths_from(dirs);
    if (!legacy.empty()) paths.legacy_dir = legacy;
    FsLoader loader;
    std::vector<std::string> files(argv + optind, argv + argc);
    LintReport report =
        files.empty() ? lint_policy(loader, paths) : lint_files(loader, files, paths.legacy_dir);
    for (const auto& e : report.errors) {
        if (e.where())
            std::printf("%s: error: %s\n", e.where()->str().c_str(), e.message().c_str());
        else
            std::printf("error: %s\n", e.message().c_str());
    }
    if (warnings) {
        for (const auto& w : report.warnings)
            std::printf("warning: %s\n", w.c_str());
        for (const auto& w : shadowed_rule_warnings(report.rules))
            std::printf("%s\n", w.c_str());
    }
    std::fflush(stdout);
    if (!report.errors.empty()) {
        std::fprintf(stderr, "%zu error(s) in %zu file(s)\n", report.errors.size(),
                     report.files.size());
        return 1;
    }
    return 0;
}
