// qrexec-lab call: a call from inside a domain, as its qrexec-client-vm makes it.
#include "lab/cli.h"

#include "lab/ask_server.h"
#include "lab/calllog.h"
#include "lab/launch.h"
#include "lab/policy_tap.h"
#include "lab/policy_view.h"
#include "lab/relay.h"

#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

int cmd_call(const Context& ctx, const Args& args) {
    std::vector<std::string> pos, local;
    bool after_dashes = false;
    for (const auto& a : args) {
        if (after_dashes)
            local.push_back(a);
        else if (a == "--")
            after_dashes = true;
        else
            pos.push_back(a);
    }
    if (pos.size() != 3) return usage_error("call needs SOURCE TARGET SERVICE[+ARG]", "call");
    if (after_dashes && local.empty()) return usage_error("no LOCAL_PROGRAM after --", "call");
    auto state = load_running(ctx.paths);
    if (!state) return 1;
    const std::string &source = pos[0], &target = pos[1], &service = pos[2];
    if (source == "dom0")
        return usage_error("calls from dom0 are 'qrexec-lab run' (or qrexec-client)", "call");
    const Domain* src = find_domain(*state, source, "call");
    if (!src) return 1;

    std::vector<std::string> argv{state->bin.client_vm,
                                  "--agent-socket=" + ctx.paths.agent_socket(source)};
    bool relay = local.empty();
    if (relay && isatty(1)) argv.push_back("-t"); // what it would do on our terminal
    argv.insert(argv.end(), {target, service});
    std::vector<std::string> ro{state->bin.client_vm};
    if (!local.empty()) {
        // qrexec-client-vm does no PATH search; resolve like a shell would.
        std::string prog = local[0];
        if (prog.find('/') == std::string::npos) {
            std::string found = find_in_path(prog);
            if (found.empty()) {
                fmt::print(stderr, "qrexec-lab call: {}: command not found\n", prog);
                return 127;
            }
            local[0] = found;
        } else {
            local[0] = fs::absolute(prog).string();
        }
        argv.insert(argv.end(), local.begin(), local.end());
    }
    auto env = current_environment();
    env["VCHAN_DOMAIN"] = std::to_string(src->domid);
    env["VCHAN_SOCKET_DIR"] = ctx.paths.vchan_dir();
    LaunchPlan plan = plan_in_domain(*state, ctx.paths, *src, argv, env, ro, true);
    // A sandboxed caller is a process of that domain: it must not need the
    // caller's folder (the cwd stays the domain folder).

    auto ask = open_ask_server(ctx.paths, source, target, service);
    std::vector<ExtraFd> extra;
    if (ask) extra.push_back({ask->listener.get(), [&] { answer_one_ask(*ask); }});

    CallRecord rec;
    rec.time = now_seconds();
    rec.source = source;
    rec.target = target;
    rec.service = service;
    rec.via = "qrexec-lab call";
    auto result = run_relayed(plan, relay, extra);
    if (!result) return 1;
    rec.duration = now_seconds() - rec.time;
    rec.exit_status = result->exit_status;
    if (relay) {
        rec.bytes_in = result->bytes_in;
        rec.bytes_out = result->bytes_out;
    }
    // qrexec-client-vm says 126 exactly when the request was refused.
    rec.decision = result->exit_status == 126 ? "deny" : "allow";
    // Refusals that did not come from the policy (e.g. a dead daemon) still show
    // as "deny" here; the policy tap's record, merged by `log`, says what the
    // policy answered.
    RuleVerdict verdict =
        deciding_rule(state->lab, ctx.paths.system_info(), source, target, service);
    rec.decided_by = verdict.rule;
    if (verdict.outcome == "ask") rec.decision = "ask:" + rec.decision;
    std::string asked = ask_answer_since(ctx.paths, source, service, rec.time);
    if (!asked.empty()) rec.detail = "asked: " + asked;
    append_line(ctx.paths.calls_log(), record_to_json(rec));
    return result->exit_status;
}

} // namespace qrexec::lab
