// qrexec-lab shell: a shell where qrexec-client-vm works as one domain.
#include "lab/cli.h"

#include "lab/calllog.h"
#include "lab/launch.h"
#include "lab/relay.h"

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

int cmd_shell(const Context& ctx, const Args& args) {
    if (args.empty()) return usage_error("shell needs a DOMAIN", "shell");
    std::vector<std::string> command;
    if (args.size() > 1) {
        if (args[1] != "--" || args.size() < 3)
            return usage_error("write the command after --", "shell");
        command.assign(args.begin() + 2, args.end());
    }
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const Domain* dom = find_domain(*state, args[0], "shell");
    if (!dom) return 1;
    // A qrexec-client-vm that knows this domain's agent socket, first in PATH.
    std::string bin_dir = ctx.paths.domain_run_dir(dom->name) + "/bin";
    make_dir(bin_dir, 0755);
    write_file_atomic(bin_dir + "/qrexec-client-vm",
                      fmt::format("#!/bin/sh\n# qrexec-lab: qrexec-client-vm as domain {}\n"
                                  "exec '{}' --agent-socket='{}' \"$@\"\n",
                                  dom->name, state->bin.client_vm,
                                  ctx.paths.agent_socket(dom->name)),
                      0755);
    auto env = current_environment();
    env["VCHAN_DOMAIN"] = std::to_string(dom->domid);
    env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    env["QREXEC_LAB_DOMAIN"] = dom->name;
    env["PATH"] = bin_dir + ":" + env["PATH"];
    std::string shell = env.count("SHELL") ? env["SHELL"] : "/bin/sh";
    std::vector<std::string> argv;
    if (command.empty()) {
        argv = {shell};
        env["PS1"] = fmt::format("[{}] \\w \\$ ", dom->name);
        fmt::print(stderr,
                   "qrexec-lab: shell as domain '{}' (exit to leave); try: qrexec-client-vm "
                   "TARGET SERVICE\n",
                   dom->name);
    } else {
        argv = {"/bin/sh", "-c", "exec \"$@\"", "sh"};
        argv.insert(argv.end(), command.begin(), command.end());
    }
    LaunchPlan plan =
        plan_in_domain(*state, ctx.paths, *dom, argv, env, {state->bin.client_vm}, command.empty());
    auto result = run_relayed(plan, false);
    return result ? result->exit_status : 1;
}

} // namespace qrexec::lab
