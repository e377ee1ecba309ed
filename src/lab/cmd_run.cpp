// qrexec-lab run: a command in a domain from dom0, like qvm-run --pass-io.
#include "lab/cli.h"

#include "lab/calllog.h"
#include "lab/launch.h"
#include "lab/relay.h"

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

int cmd_run(const Context& ctx, const Args& args) {
    std::string target, user = "DEFAULT";
    std::vector<std::string> command;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (!command.empty())
            command.push_back(a);
        else if (a == "--") {
            if (target.empty()) return usage_error("run needs TARGET before --", "run");
            command.assign(args.begin() + static_cast<long>(i) + 1, args.end());
            if (command.empty()) return usage_error("run needs a COMMAND", "run");
            break;
        } else if (a == "--user" || a == "-u") {
            if (i + 1 >= args.size()) return usage_error("--user needs a value", "run");
            user = args[++i];
        } else if (a.rfind("--user=", 0) == 0) {
            user = a.substr(7);
        } else if (target.empty()) {
            target = a;
        } else {
            command.push_back(a);
        }
    }
    if (target.empty() || command.empty())
        return usage_error("run needs TARGET and COMMAND", "run");
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const Domain* dom = find_domain(*state, target, "run");
    if (!dom) return 1;
    std::string line;
    for (const auto& c : command)
        line += (line.empty() ? "" : " ") + c;
    LaunchPlan plan;
    plan.argv = {state->bin.client, "--socket-dir=" + ctx.paths.daemon_dir(), "-d", target,
                 user + ":" + line};
    plan.env = current_environment();
    plan.env["VCHAN_DOMAIN"] = "0";
    plan.env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    plan.umask0 = lab_has_other_users(*state);
    CallRecord rec;
    rec.time = now_seconds();
    rec.source = "dom0";
    rec.target = target;
    rec.service = "(run) " + line;
    if (rec.service.size() > 26) rec.service = rec.service.substr(0, 25) + "…";
    rec.via = "qrexec-lab run";
    rec.decision = "dom0";
    rec.detail = "dom0 commands need no policy";
    auto result = run_relayed(plan, true);
    if (!result) return 1;
    rec.duration = now_seconds() - rec.time;
    rec.exit_status = result->exit_status;
    rec.bytes_in = result->bytes_in;
    rec.bytes_out = result->bytes_out;
    append_line(ctx.paths.calls_log(), record_to_json(rec));
    return result->exit_status;
}

} // namespace qrexec::lab
