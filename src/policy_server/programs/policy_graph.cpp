// qrexec-policy-graph: who may call what, as Graphviz DOT (or SVG/PNG through `dot`).
#include "io/fd.h"
#include "io/log.h"
#include "io/process.h"
#include "policy/tools.h"
#include "policy_server/programs/command_line.h"
#include "policy_server/programs/programs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace qrexec::policy {

// Named per program: the files of this folder are compiled in one batch.
namespace policy_graph_program {

using programs::CommandLine;

constexpr programs::Program kProgram = {
    "qrexec-policy-graph",
    "usage: qrexec-policy-graph [-h] [--policy-dir DIR] [--system-info FILE]\n"
    "                           [--service SERVICE[+ARG]] [--source VM] [--target VM]\n"
    "                           [--no-ask] [--format dot|svg|png] [--output FILE]\n"
    "Allowed calls are solid edges, calls that ask the user are dashed.\n"};

// Runs `dot -T<format>` with the graph on stdin and output to `out_fd`.
int render(const std::string& dot_text, const std::string& format, int out_fd) {
    auto in = io::make_pipe();
    std::string fmt_arg = "-T" + format;
    io::Child child = io::spawn({in.first.get(), out_fd, -1}, [&]() -> int {
        io::close_fds_from(3);
        ::execlp("dot", "dot", fmt_arg.c_str(), static_cast<char*>(nullptr));
        std::fprintf(stderr, "%s: cannot run dot (is Graphviz installed?)\n", kProgram.name);
        return 127;
    });
    in.first.reset();
    bool ok = io::write_all(in.second.get(), dot_text);
    in.second.reset();
    int status = child.wait();
    return ok && status == 0 ? 0 : 1;
}

// The graph in `format` to `output` ("" = stdout).
int write_graph(const std::string& dot, const std::string& format, const std::string& output) {
    io::Fd out_file;
    int out_fd = 1;
    if (!output.empty()) {
        out_file = io::Fd(::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!out_file) {
            std::perror(output.c_str());
            return 1;
        }
        out_fd = out_file.get();
    }
    if (format == "dot") return io::write_all(out_fd, dot) ? 0 : 1;
    return render(dot, format, out_fd);
}

} // namespace policy_graph_program

int policy_graph_main(int argc, char** argv) {
    using namespace policy_graph_program;
    io::require_standard_fds(kProgram.name);
    std::string format = "dot", output;
    GraphOptions options;
    CommandLine cl(kProgram, programs::kPolicyDirOption | programs::kSystemInfoOption);
    cl.option("service", [&](const char* value) { options.services.emplace_back(value); });
    cl.option("source", [&](const char* value) { options.sources.emplace_back(value); });
    cl.option("target", [&](const char* value) { options.targets.emplace_back(value); });
    cl.flag("no-ask", [&] { options.include_ask = false; });
    cl.option("format", [&](const char* value) { format = value; });
    cl.option("output", [&](const char* value) { output = value; });
    auto positional = cl.parse(argc, argv);
    if (!positional.empty())
        programs::usage_error(kProgram, "unrecognized arguments: " + positional.front());
    if (format != "dot" && format != "svg" && format != "png")
        programs::usage_error(kProgram, "--format must be dot, svg or png");

    auto inputs = programs::load_tool_inputs(kProgram, cl.shared, true);
    if (!inputs) return 1;
    return write_graph(policy_graph_dot(*inputs->policy, *inputs->system, options), format, output);
}

} // namespace qrexec::policy
