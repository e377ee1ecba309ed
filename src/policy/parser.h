// The policy.d parser (POLICY.md §1-§3, §9): files, line grammar, tokens, directives,
// and the legacy R4.0 per-service format. Pure apart from the Loader it is given.
#pragma once

#include "policy/loader.h"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::policy {

struct Location {
    std::string file;
    int line = 0;
    std::string str() const { return file + ":" + std::to_string(line); }
};

// A syntax error: what() is "file:line: message" (or just the message when there is
// no location, e.g. a missing policy directory).
class PolicySyntaxError : public std::runtime_error {
  public:
    PolicySyntaxError(const Location& where, const std::string& message);
    explicit PolicySyntaxError(const std::string& message);
    const std::optional<Location>& where() const { return where_; }
    const std::string& message() const { return message_; }

  private:
    std::optional<Location> where_;
    std::string message_;
};

enum class TokenKind {
    Literal,        // VM name, dom0, uuid:<UUID>
    Any,            // *
    AdminVM,        // @adminvm
    AnyVM,          // @anyvm
    Default,        // @default
    Type,           // @type:T
    Tag,            // @tag:T
    DispVM,         // @dispvm
    DispVMTemplate, // @dispvm:X
    DispVMTag,      // @dispvm:@tag:T
};

// Which column a token is read for; decides which kinds are allowed (§3).
enum class Column { Source, Target, Redirect, IntendedTarget };

struct Token {
    TokenKind kind = TokenKind::Literal;
    std::string text;  // as written
    std::string value; // the part after the keyword prefix (Literal: the whole text)

    bool operator==(const Token&) const = default;
};

// Parses a token for a column; nullopt and *error on failure.
std::optional<Token> parse_token(std::string_view text, Column column, std::string* error);

enum class ActionKind { Allow, Deny, Ask };
std::string_view action_name(ActionKind kind);

struct Rule {
    std::string service;  // "*" or a name
    std::string argument; // "*" or "+..."
    Token source;
    Token target;
    ActionKind action = ActionKind::Deny;
    std::optional<Token> redirect;       // target=
    std::optional<Token> default_target; // default_target= (ask)
    std::optional<std::string> user;
    std::optional<bool> notify;
    std::optional<bool> autostart;
    Location where;

    bool notify_or(bool fallback) const { return notify.value_or(fallback); }
    bool autostart_or_default() const { return autostart.value_or(true); }
};

// The text of a rule in policy.d syntax (for tools).
std::string format_rule(const Rule& rule);

struct PolicyPaths {
    // In priority order: a basename in an earlier directory hides later ones.
    std::vector<std::string> dirs;
    std::string legacy_dir = "/etc/qubes-rpc/policy";

    static std::vector<std::string> default_dirs();
    // QREXEC_POLICY_DIR (colon list) replaces dirs, QREXEC_LEGACY_POLICY_DIR replaces
    // legacy_dir; otherwise defaults.
    static PolicyPaths from_env();
};

// A colon-separated directory list (QREXEC_POLICY_DIR, --policy-dir); empty parts are
// skipped.
std::vector<std::string> split_dir_list(std::string_view list);

struct Policy {
    std::vector<Rule> rules;
    // Set when loading failed: every request is then denied.
    std::optional<std::string> error;
    std::optional<Location> error_location;
    std::vector<std::string> warnings;
    // Every file read (for tools and reload diagnostics).
    std::vector<std::string> files;

    bool ok() const { return !error; }
};

// Loads the whole policy (never throws; errors are recorded in Policy::error).
Policy load_policy(const Loader& loader, const PolicyPaths& paths);

// Parses one policy.d text as if it were the top-level file `path` (includes are
// resolved through the loader). Throws PolicySyntaxError.
std::vector<Rule> parse_policy_text(const Loader& loader, std::string_view text,
                                    const std::string& path, const std::string& legacy_dir,
                                    std::vector<std::string>* warnings = nullptr);

// Parses a text in the legacy R4.0 per-service syntax for service/argument.
std::vector<Rule> parse_legacy_text(const Loader& loader, std::string_view text,
                                    const std::string& path, const std::string& service,
                                    const std::string& argument, const std::string& base_dir);

// Lint: like load_policy / parsing single files, but every syntax error is collected
// (parsing goes on with the next line) instead of stopping at the first.
struct LintReport {
    std::vector<PolicySyntaxError> errors;
    std::vector<std::string> warnings;
    std::vector<Rule> rules; // the rules that did parse
    std::vector<std::string> files;
};
LintReport lint_policy(const Loader& loader, const PolicyPaths& paths);
// Each file is checked as a top-level policy.d file (includes relative to its directory).
LintReport lint_files(const Loader& loader, const std::vector<std::string>& files,
                      const std::string& legacy_dir);

// §1 name filter: regular-file check is the caller's; this checks the name only.
bool is_policy_file_name(std::string_view name);
// Characters allowed in a considered file name ([0-9a-z_.-]).
bool is_valid_policy_file_name(std::string_view name);

} // namespace qrexec::policy
