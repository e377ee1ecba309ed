// qubes-policy-lint: checks policy files, printing file:line diagnostics; exit status 1
// when there is any error.
#include "io/log.h"
#include "policy/parser.h"
#include "policy/tools.h"
#include "policy_server/programs/command_line.h"
#include "policy_server/programs/programs.h"

#include <cstdio>
#include <string>
#include <vector>

namespace qrexec::policy {

// Named per program: the files of this folder are compiled in one batch.
namespace policy_lint_program {

using programs::CommandLine;

constexpr programs::Program kProgram = {
    "qubes-policy-lint",
    "usage: qubes-policy-lint [-h] [--policy-dir DIR] [--legacy-dir DIR] [--no-warnings]\n"
    "                         [FILE ...]\n"
    "Without FILEs the whole policy (the policy directories) is checked.\n"};

// "file:line: error: message" (or "error: message" for an error of no line).
void print_lint_error(const PolicySyntaxError& e) {
    if (e.where())
        std::printf("%s: error: %s\n", e.where()->str().c_str(), e.message().c_str());
    else
        std::printf("error: %s\n", e.message().c_str());
}

} // namespace policy_lint_program

int policy_lint_main(int argc, char** argv) {
    using namespace policy_lint_program;
    io::require_standard_fds(kProgram.name);
    std::string legacy;
    bool warnings = true;
    CommandLine cl(kProgram, programs::kPolicyDirOption);
    cl.option("legacy-dir", [&](const char* value) { legacy = value; });
    cl.flag("no-warnings", [&] { warnings = false; });
    std::vector<std::string> files = cl.parse(argc, argv);

    PolicyPaths paths = cl.shared.policy_paths();
    if (!legacy.empty()) paths.legacy_dir = legacy;
    FsLoader loader;
    LintReport report =
        files.empty() ? lint_policy(loader, paths) : lint_files(loader, files, paths.legacy_dir);
    for (const auto& e : report.errors)
        print_lint_error(e);
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

} // namespace qrexec::policy
