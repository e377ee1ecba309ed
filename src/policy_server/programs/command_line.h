// What the policy programs share: argparse-style command lines (upstream's tools are
// Python argparse programs, so usage errors look like argparse's and exit 2), the
// shared --policy-dir / --system-info options and loading what they designate.
#pragma once

#include "policy/cache.h"
#include "policy/engine.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::policy::programs {

// A program's name (log lines, error prefixes) and its usage text.
struct Program {
    const char* name;
    const char* usage;
};

// The usage on stderr, then "<name>: error: <message>"; exits 2.
[[noreturn]] void usage_error(const Program& program, const std::string& message);

// "<name>: <message>" on stderr: a tool's fatal error.
void print_error(const Program& program, const std::string& message);

// The options every policy program reads the same way.
struct SharedOptions {
    std::vector<std::string> policy_dirs; // --policy-dir values, colon lists split
    std::string system_info;              // --system-info FILE

    // The option's directories, else $QREXEC_POLICY_DIR, else the defaults; the legacy
    // directory from $QREXEC_LEGACY_POLICY_DIR or the default.
    PolicyPaths policy_paths() const;
    // The option's file, else $QREXEC_SYSTEM_INFO; "" = qubesd.
    std::string system_info_file() const;
    // How a one-shot program loads the policy cache (not watched).
    CacheConfig cache_config() const;
};

// Which shared options a program accepts (a program that does not list one rejects it
// like any unknown option).
enum SharedOption : unsigned { kPolicyDirOption = 1, kSystemInfoOption = 2 };

// A getopt_long command line: -h/--help, the selected shared options and the
// program's own long options, each with its handler.
class CommandLine {
  public:
    CommandLine(const Program& program, unsigned shared_options);
    CommandLine(const CommandLine&) = delete; // handlers point back at `shared`
    CommandLine& operator=(const CommandLine&) = delete;

    // --name VALUE
    void option(const char* name, std::function<void(const char*)> handler);
    // --name (no value)
    void flag(const char* name, std::function<void()> handler);

    // Runs the handlers in command-line order (GNU permutation: options may follow
    // positionals; "--" ends them) and returns the positional arguments. --help prints
    // the usage to stdout and exits 0; an unknown option or a missing value is a usage
    // error.
    std::vector<std::string> parse(int argc, char** argv);

    SharedOptions shared;

  private:
    struct Entry {
        std::string name;
        bool has_value;
        std::function<void(const char*)> handler;
    };
    const Program& program_;
    std::vector<Entry> entries_;
};

// Policy and system information for the offline tools (explain, graph).
struct ToolInputs {
    std::shared_ptr<const Policy> policy;
    std::shared_ptr<const SystemInfo> system;
};
// Loads both; on failure prints "<name>: <why>" and returns nullopt. A policy that does
// not load is a failure only with policy_must_load (explain reports it per request).
std::optional<ToolInputs> load_tool_inputs(const Program& program, const SharedOptions& options,
                                           bool policy_must_load);

} // namespace qrexec::policy::programs
