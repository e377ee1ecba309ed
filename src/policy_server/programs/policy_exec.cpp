// qrexec-policy-exec: evaluates one call against the policy (POLICY.md §11) and prints
// the key=value answer the qrexec daemon parses (DAEMON.md §5.3).
#include "io/log.h"
#include "io/process.h"
#include "policy_server/ask.h"
#include "policy_server/decision_log.h"
#include "policy_server/programs/command_line.h"
#include "policy_server/programs/programs.h"
#include "qubesd/disposable.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace qrexec::policy {

namespace {

using programs::CommandLine;

constexpr programs::Program kProgram = {
    "qrexec-policy-exec",
    "usage: qrexec-policy-exec [-h] [--assume-yes-for-ask] [--just-evaluate]\n"
    "                          [--path PATH] [--policy-dir DIR] [--system-info FILE]\n"
    "                          [--ask-command COMMAND]\n"
    "                          [domain-id] source-domain intended-target\n"
    "                          service-name [process-ident]\n"};

struct Options {
    programs::SharedOptions shared;
    bool assume_yes = false;
    bool just_evaluate = false;
    std::string ask_command;
    std::vector<std::string> positional;
};

Options parse_options(int argc, char** argv) {
    Options opts;
    opts.ask_command = ask_command_from_env();
    CommandLine cl(kProgram, programs::kPolicyDirOption | programs::kSystemInfoOption);
    cl.flag("assume-yes-for-ask", [&] { opts.assume_yes = true; });
    cl.flag("just-evaluate", [&] { opts.just_evaluate = true; });
    cl.option("path", [](const char*) {
        // Upstream 4.4.2 crashes on --path before evaluating anything (exit 1).
        std::fprintf(stderr, "%s: --path is not supported (use --policy-dir)\n", kProgram.name);
        std::exit(1);
    });
    cl.option("ask-command", [&](const char* value) { opts.ask_command = value; });
    opts.positional = cl.parse(argc, argv);
    opts.shared = cl.shared;
    if (opts.positional.size() != 3 && opts.positional.size() != 5)
        programs::usage_error(kProgram,
                              "wrong number of arguments (expected SOURCE TARGET SERVICE, or the "
                              "deprecated DOMID SOURCE TARGET SERVICE IDENT)");
    return opts;
}

std::string qrexec_client_path() {
    const char* env = std::getenv("QREXEC_CLIENT_PATH");
    return env && *env ? env : "/usr/lib/qubes/qrexec-client";
}

std::string answer_value(const std::string& answer, const std::string& key) {
    size_t pos = 0;
    while (pos <= answer.size()) {
        auto end = answer.find('\n', pos);
        std::string line = answer.substr(pos, end == std::string::npos ? end : end - pos);
        if (line.starts_with(key + "=")) return line.substr(key.size() + 1);
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return {};
}

// The deprecated 5-argument form: run the allowed call with qrexec-client.
[[noreturn]] void execute_call(const Decision& d, const std::string& domid,
                               const std::string& source, const std::string& ident) {
    std::string target = answer_value(d.answer, "target");
    std::string user = answer_value(d.answer, "user");
    std::string rt = answer_value(d.answer, "requested_target");
    std::string service = answer_value(d.answer, "service");
    std::string call_source = answer_value(d.answer, "policy_source");
    if (service.empty()) service = d.service + d.argument;
    if (call_source.empty()) call_source = source;
    std::string client = qrexec_client_path();
    std::string connect = ident + "," + source + "," + domid;
    std::vector<std::string> argv;
    if (target == "dom0") {
        std::string kind = !rt.empty() && rt[0] == '@' ? "keyword " + rt.substr(1) : "name " + rt;
        argv = {"qrexec-client",
                "-Ed",
                "dom0",
                "-c",
                connect,
                "--",
                "QUBESRPC " + service + " " + call_source + " " + kind};
    } else {
        std::string dest = answer_value(d.answer, "target_uuid");
        if (dest.empty()) dest = target;
        std::string flags = "-Ed";
        const std::string socket = qubesd::socket_path_from_env();
        constexpr std::string_view kDispvm = "@dispvm:";
        // A disposable is created, checked and started here, and killed by
        // qrexec-client (-k) when the call ends.
        auto ready = dest.starts_with(kDispvm)
                         ? qubesd::launch_disposable(socket, dest.substr(kDispvm.size()))
                         : qubesd::start_vm(socket, dest);
        if (!ready.ok) {
            QLOG("{}", ready.error);
            std::exit(1);
        }
        if (dest.starts_with(kDispvm)) flags = "-EWkd";
        dest = ready.name;
        argv = {"qrexec-client",
                flags,
                dest,
                "-c",
                connect,
                "--",
                user + ":QUBESRPC " + service + " " + call_source};
    }
    io::exec_program(client, argv);
    QLOG_ERRNO("exec {}", client);
    std::exit(1);
}

// Evaluates, asking the configured command when the policy says `ask`; logs the
// decision and its notification.
Decision decide_call(const Options& opts, const Request& request) {
    PolicyCache cache(opts.shared.cache_config());
    std::shared_ptr<const Policy> policy = cache.policy();
    for (const auto& w : policy->warnings)
        QLOG("warning: {}", w);
    if (!policy->ok()) QLOG("error loading policy: {}", *policy->error);

    std::string error;
    auto system = cache.fetch_system_info(&error);
    Decision decision;
    if (!system) {
        decision = deny_without_system_info(request, error);
    } else {
        decision = evaluate(*policy, *system, request);
        if (decision.outcome == Outcome::Ask) {
            log_decision(decision);
            std::optional<std::string> choice;
            if (opts.ask_command.empty())
                QLOG("no ask command configured (QREXEC_ASK_COMMAND), denying");
            else
                choice = run_ask_command(opts.ask_command, *decision.ask, *system);
            decision = answer_ask(decision, *system, choice);
        }
    }
    log_decision(decision);
    notify_if_needed(decision, system.get());
    return decision;
}

} // namespace

int policy_exec_main(int argc, char** argv) {
    io::require_standard_fds(kProgram.name);
    Options opts = parse_options(argc, argv);
    bool legacy = opts.positional.size() == 5;
    size_t first = legacy ? 1 : 0;

    Request request;
    request.source = opts.positional[first];
    request.intended_target = opts.positional[first + 1];
    request.service_and_arg = opts.positional[first + 2];
    request.assume_yes_for_ask = opts.assume_yes;
    request.just_evaluate = opts.just_evaluate;

    Decision decision = decide_call(opts, request);
    ExecReport report = exec_report(decision, opts.just_evaluate);
    std::fwrite(report.output.data(), 1, report.output.size(), stdout);
    std::fflush(stdout);
    if (report.status != 0) return report.status;
    if (legacy && !opts.just_evaluate)
        execute_call(decision, opts.positional[0], request.source, opts.positional[4]);
    return 0;
}

} // namespace qrexec::policy
