#include "policy_server/programs/command_line.h"

#include <getopt.h>

#include <cstdio>
#include <cstdlib>

namespace qrexec::policy::programs {

namespace {
// getopt_long codes of the entries: kFirstCode + index (above every short option).
constexpr int kFirstCode = 1000;
} // namespace

void usage_error(const Program& program, const std::string& message) {
    std::fputs(program.usage, stderr);
    std::fprintf(stderr, "%s: error: %s\n", program.name, message.c_str());
    std::exit(2);
}

void print_error(const Program& program, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", program.name, message.c_str());
}

PolicyPaths SharedOptions::policy_paths() const {
    PolicyPaths paths = PolicyPaths::from_env();
    if (!policy_dirs.empty()) paths.dirs = policy_dirs;
    return paths;
}

std::string SharedOptions::system_info_file() const {
    return system_info_file_from_option_or_env(system_info);
}

CacheConfig SharedOptions::cache_config() const {
    CacheConfig config;
    config.paths = policy_paths();
    config.system_info_file = system_info_file();
    config.qubesd_socket = qubesd_internal_socket_from_env();
    config.log = false; // the programs report load errors themselves
    return config;
}

CommandLine::CommandLine(const Program& program, unsigned shared_options) : program_(program) {
    if (shared_options & kPolicyDirOption)
        option("policy-dir", [this](const char* value) {
            auto dirs = split_dir_list(value);
            shared.policy_dirs.insert(shared.policy_dirs.end(), dirs.begin(), dirs.end());
        });
    if (shared_options & kSystemInfoOption)
        option("system-info", [this](const char* value) { shared.system_info = value; });
}

void CommandLine::option(const char* name, std::function<void(const char*)> handler) {
    entries_.push_back({name, true, std::move(handler)});
}

void CommandLine::flag(const char* name, std::function<void()> handler) {
    entries_.push_back({name, false, [h = std::move(handler)](const char*) { h(); }});
}

std::vector<std::string> CommandLine::parse(int argc, char** argv) {
    std::vector<struct ::option> longopts; // (not the member function option())
    longopts.push_back({"help", no_argument, nullptr, 'h'});
    for (size_t i = 0; i < entries_.size(); ++i)
        longopts.push_back({entries_[i].name.c_str(),
                            entries_[i].has_value ? required_argument : no_argument, nullptr,
                            kFirstCode + static_cast<int>(i)});
    longopts.push_back({nullptr, 0, nullptr, 0});

    opterr = 0; // our own argparse-style messages instead of getopt's
    optind = 0; // glibc: start afresh (a second parse in one process, e.g. tests)
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts.data(), nullptr)) != -1) {
        if (c == 'h') {
            std::fputs(program_.usage, stdout);
            std::exit(0);
        }
        if (c == ':')
            usage_error(program_,
                        std::string("argument ") + argv[optind - 1] + ": expected one argument");
        size_t index = static_cast<size_t>(c - kFirstCode);
        if (c < kFirstCode || index >= entries_.size())
            usage_error(program_, std::string("unrecognized arguments: ") + argv[optind - 1]);
        entries_[index].handler(optarg);
    }
    return std::vector<std::string>(argv + optind, argv + argc);
}

std::optional<ToolInputs> load_tool_inputs(const Program& program, const SharedOptions& options,
                                           bool policy_must_load) {
    PolicyCache cache(options.cache_config());
    ToolInputs inputs{cache.policy(), nullptr};
    if (policy_must_load && !inputs.policy->ok()) {
        print_error(program, "error loading policy: " + *inputs.policy->error);
        return std::nullopt;
    }
    std::string error;
    inputs.system = cache.fetch_system_info(&error);
    if (!inputs.system) {
        print_error(program, error);
        return std::nullopt;
    }
    return inputs;
}

} // namespace qrexec::policy::programs
