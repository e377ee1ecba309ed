// qrexec-policy-graph: who may call what, as Graphviz DOT (or SVG/PNG through `dot`).
#include "io/log.h"
#include "io/process.h"
#include "policy/cli.h"
#include "policy/tools.h"

#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using namespace qrexec;
using namespace qrexec::policy;

namespace {
constexpr const char* kUsage =
    "usage: qrexec-policy-graph [-h] [--policy-dir DIR] [--system-info FILE]\n"
    "                           [--service SERVICE[+ARG]] [--source VM] [--target VM]\n"
    "                           [--no-ask] [--format dot|svg|png] [--output FILE]\n"
    "Allowed calls are solid edges, calls that ask the user are dashed.\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fputs(kUsage, stderr);
    std::fprintf(stderr, "qrexec-policy-graph: error: %s\n", message.c_str());
    std::exit(2);
}

// Runs `dot -T<format>` with the graph on stdin and output to `out_fd`.
int render(const std::string& dot_text, const std::string& format, int out_fd) {
    auto in = io::make_pipe();
    std::string fmt_arg = "-T" + format;
    io::Child child = io::spawn({in.first.get(), out_fd, -1}, [&]() -> int {
        io::close_fds_from(3);
        ::execlp("dot", "dot", fmt_arg.c_str(), static_cast<char*>(nullptr));
        std::fprintf(stderr, "qrexec-policy-graph: cannot run dot (is Graphviz installed?)\n");
        return 127;
    });
    in.first.reset();
    bool ok = io::write_all(in.second.get(), dot_text);
    in.second.reset();
    int status = child.wait();
    return ok && status == 0 ? 0 : 1;
}
} // namespace

int main(int argc, char** argv) {
    io::require_standard_fds("qrexec-policy-graph");
    enum {
        OPT_DIR = 1000,
        OPT_SYSINFO,
        OPT_SERVICE,
        OPT_SOURCE,
        OPT_TARGET,
        OPT_NOASK,
        OPT_FORMAT,
        OPT_OUTPUT
    };
    static const option longopts[] = {
        {"help", no_argument, nullptr, 'h'},
        {"policy-dir", required_argument, nullptr, OPT_DIR},
        {"system-info", required_argument, nullptr, OPT_SYSINFO},
        {"service", required_argument, nullptr, OPT_SERVICE},
        {"source", required_argument, nullptr, OPT_SOURCE},
        {"target", required_argument, nullptr, OPT_TARGET},
        {"no-ask", no_argument, nullptr, OPT_NOASK},
        {"format", required_argument, nullptr, OPT_FORMAT},
        {"output", required_argument, nullptr, OPT_OUTPUT},
        {nullptr, 0, nullptr, 0},
    };
    std::vector<std::string> dirs;
    std::string system_info, format = "dot", output;
    GraphOptions options;
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
        case OPT_SERVICE:
            options.services.emplace_back(optarg);
            break;
        case OPT_SOURCE:
            options.sources.emplace_back(optarg);
            break;
        case OPT_TARGET:
            options.targets.emplace_back(optarg);
            break;
        case OPT_NOASK:
            options.include_ask = false;
            break;
        case OPT_FORMAT:
            format = optarg;
            break;
        case OPT_OUTPUT:
            output = optarg;
            break;
        case ':':
            usage_error(std::string("argument ") + argv[optind - 1] + ": expected one argument");
        default:
            usage_error(std::string("unrecognized arguments: ") + argv[optind - 1]);
        }
    }
    if (optind < argc) usage_error(std::string("unrecognized arguments: ") + argv[optind]);
    if (format != "dot" && format != "svg" && format != "png")
        usage_error("--format must be dot, svg or png");

    FsLoader loader;
    Policy policy = load_policy(loader, policy_paths_from(dirs));
    if (!policy.ok()) {
        std::fprintf(stderr, "qrexec-policy-graph: error loading policy: %s\n",
                     policy.error->c_str());
        return 1;
    }
    auto source = SystemInfoSource::from_option_or_env(system_info);
    std::string error;
    auto system = source.get(&error);
    if (!system) {
        std::fprintf(stderr, "qrexec-policy-graph: %s\n", error.c_str());
        return 1;
    }
    std::string dot = policy_graph_dot(policy, *system, options);
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
