// qrexec-policy explain SOURCE TARGET SERVICE+ARG: the decision, the rule that made it
// (file:line) and why each earlier rule did not match.
#include "io/log.h"
#include "policy/tools.h"
#include "policy_server/programs/command_line.h"
#include "policy_server/programs/programs.h"

#include <cstdio>
#include <string>

namespace qrexec::policy {

// Named per program: the files of this folder are compiled in one batch.
namespace policy_explain_program {

using programs::CommandLine;

constexpr programs::Program kProgram = {
    "qrexec-policy", "usage: qrexec-policy explain [--policy-dir DIR] [--system-info FILE]\n"
                     "                             [--requested-source VM] [--assume-yes-for-ask]\n"
                     "                             [--just-evaluate] SOURCE TARGET SERVICE+ARG\n"};

} // namespace policy_explain_program

int policy_explain_main(int argc, char** argv) {
    using namespace policy_explain_program;
    io::require_standard_fds(kProgram.name);
    Request request;
    CommandLine cl(kProgram, programs::kPolicyDirOption | programs::kSystemInfoOption);
    cl.option("requested-source", [&](const char* value) { request.requested_source = value; });
    cl.flag("assume-yes-for-ask", [&] { request.assume_yes_for_ask = true; });
    cl.flag("just-evaluate", [&] { request.just_evaluate = true; });
    auto args = cl.parse(argc, argv);
    if (args.empty() || args[0] != "explain")
        programs::usage_error(kProgram, "the only command is 'explain'");
    if (args.size() != 4)
        programs::usage_error(kProgram, "explain needs SOURCE TARGET SERVICE+ARG");
    request.source = args[1];
    request.intended_target = args[2];
    request.service_and_arg = args[3];

    // A policy that does not load is part of the explanation, not a failure.
    auto inputs = programs::load_tool_inputs(kProgram, cl.shared, false);
    if (!inputs) return 1;
    std::string text = explain_text(*inputs->policy, *inputs->system, request);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

} // namespace qrexec::policy
