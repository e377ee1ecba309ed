// qrexec-lab's command line: global options, help, and the dispatch to one
// handler per subcommand (declared in cli.h, each in its own file).
#include "lab/commands.h"

#include "lab/cli.h"
#include "lab/multihost.h"
#include "lab/trace.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

bool help_allowed(const std::string& command, const Args& args) {
    if (command.empty() || args.empty()) return true;
    return command != "call" && command != "run" && command != "shell";
}

} // namespace

int run_lab_command(const std::vector<std::string>& raw) {
    Context ctx;
    std::string state_dir;
    std::vector<std::string> args;
    std::string command;
    bool help = false;
    // Global options before the command; --state-dir is also accepted after it
    // (up to a "--", which belongs to the command).
    bool dashes = false;
    for (size_t i = 0; i < raw.size(); ++i) {
        const std::string& a = raw[i];
        if (!dashes && a.rfind("--state-dir=", 0) == 0) {
            state_dir = a.substr(12);
        } else if (!dashes && a == "--state-dir") {
            if (i + 1 >= raw.size()) return usage_error("--state-dir needs a value");
            state_dir = raw[++i];
        } else if (!dashes && (a == "--help" || a == "-h") && help_allowed(command, args)) {
            help = true;
        } else if (command.empty()) {
            if (!a.empty() && a[0] == '-') return usage_error("unknown option " + a);
            command = a;
        } else {
            if (a == "--") dashes = true;
            args.push_back(a);
        }
    }
    if (command == "help") {
        if (args.empty()) return fmt::print("{}", usage_text()), 0;
        command = args[0];
        help = true;
    }
    if (command == "trace") return run_trace_command(args, help); // lab/trace.cpp
    if (command.empty()) {
        if (help) return fmt::print("{}", usage_text()), 0;
        fmt::print(stderr, "{}", usage_text());
        return 2;
    }
    if (help) {
        auto it = command_help().find(command);
        if (it == command_help().end()) return usage_error("unknown command " + command);
        fmt::print("{}", it->second);
        return 0;
    }
    ctx.paths.root = state_dir.empty() ? default_state_dir() : state_dir;
    if (ctx.paths.root.size() > 1 && ctx.paths.root.back() == '/') ctx.paths.root.pop_back();
    ctx.paths.root = fs::absolute(ctx.paths.root).lexically_normal().string();
    if (command != "up" && command != "check" && command != "demo")
        if (auto air = load_air_state(ctx.paths)) return air_command(ctx, *air, command, args);
    using Handler = int (*)(const Context&, const Args&);
    static const std::map<std::string, Handler> handlers{
        {"up", cmd_up},         {"check", cmd_check},
        {"status", cmd_status}, {"down", cmd_down},
        {"call", cmd_call},     {"run", cmd_run},
        {"shell", cmd_shell},   {"log", cmd_log},
        {"demo", cmd_demo},     {"supervise", cmd_supervise},
        {"ask", cmd_ask}};
    auto it = handlers.find(command);
    if (it == handlers.end()) return usage_error("unknown command '" + command + "'");
    return it->second(ctx, args);
}

} // namespace qrexec::lab
