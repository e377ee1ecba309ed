#include "policy/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>

namespace qrexec::policy {

namespace {

// Nesting bound for !include chains: upstream recurses without limit (and dies on a
// loop); we refuse instead.
constexpr int kMaxIncludeDepth = 32;

// Python's str.split()/strip() treat these ASCII characters as whitespace.
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           (c >= '\x1c' && c <= '\x1f');
}

std::string_view strip(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::vector<std::string> split_fields(std::string_view s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(s[i]))
            ++i;
        size_t start = i;
        while (i < s.size() && !is_space(s[i]))
            ++i;
        if (i > start) out.emplace_back(s.substr(start, i - start));
    }
    return out;
}

// Universal newlines, like Python's text mode: \n, \r\n and \r all end a line.
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' || text[i] == '\r') {
            lines.push_back(text.substr(start, i - start));
            if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            start = i + 1;
        }
    }
    if (start < text.size()) lines.push_back(text.substr(start));
    return lines;
}

bool all_chars(std::string_view s, bool (*ok)(char)) {
    return std::all_of(s.begin(), s.end(), ok);
}

bool service_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}
bool argument_char(char c) {
    return service_char(c) || c == '+';
}
bool lower_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

std::string quote_for_message(std::string_view s) {
    // Python's repr() of a plain string, which upstream's messages use.
    std::string q = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos
                        ? "\""
                        : "'";
    std::string out = q;
    for (char c : s) {
        if (c == '\\')
            out += "\\\\";
        else if (std::string(1, c) == q)
            out += "\\" + q;
        else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        else
            out += c;
    }
    return out + q;
}

std::string_view column_name(Column column) {
    switch (column) {
    case Column::Source:
        return "source";
    case Column::Target:
        return "target";
    case Column::Redirect:
        return "redirect";
    case Column::IntendedTarget:
        return "intended target";
    }
    return "?";
}

bool allowed_in(TokenKind kind, Column column) {
    switch (column) {
    case Column::Source:
        return kind != TokenKind::Default && kind != TokenKind::DispVM;
    case Column::Target:
        return true;
    case Column::Redirect:
        return kind == TokenKind::Literal || kind == TokenKind::AdminVM ||
               kind == TokenKind::DispVM || kind == TokenKind::DispVMTemplate;
    case Column::IntendedTarget:
        return kind == TokenKind::Literal || kind == TokenKind::AdminVM ||
               kind == TokenKind::Default || kind == TokenKind::DispVM ||
               kind == TokenKind::DispVMTemplate;
    }
    return false;
}

std::string resolve(const std::string& base_dir, const std::string& path) {
    if (!path.empty() && path[0] == '/') return path;
    return base_dir + "/" + path;
}

// A syntax error at `where` when there is one (a file named by a directive), else one
// of no location (a top-level file or directory).
[[noreturn]] void fail(const Location* where, const std::string& message) {
    if (where) throw PolicySyntaxError(*where, message);
    throw PolicySyntaxError(message);
}

void check_include_depth(const Location& where, int depth) {
    if (depth > kMaxIncludeDepth)
        throw PolicySyntaxError(where, "includes nested too deeply (include loop?)");
}

// Calls body(where, line) for each line that is not blank or a comment (stripped).
template <typename F> void for_each_line(std::string_view text, const std::string& path, F&& body) {
    auto lines = split_lines(text);
    for (size_t i = 0; i < lines.size(); ++i) {
        std::string_view line = strip(lines[i]);
        if (line.empty() || line[0] == '#') continue;
        body(Location{path, static_cast<int>(i + 1)}, line);
    }
}

// Shared state of one load: loader, warnings, the files read.
struct Context {
    const Loader& loader;
    std::string legacy_dir;
    std::vector<std::string>* warnings;
    std::vector<std::string>* files;
    // Lint mode: errors are collected per line and parsing goes on.
    std::vector<PolicySyntaxError>* errors = nullptr;
};

// Runs one line's parsing; in lint mode an error is recorded instead of thrown.
template <typename F> void per_line(Context& ctx, F&& body) {
    if (!ctx.errors) return body();
    try {
        body();
    } catch (const PolicySyntaxError& e) {
        ctx.errors->push_back(e);
    }
}

class FileParser {
  public:
    FileParser(Context& ctx, std::vector<Rule>& out) : ctx_(ctx), out_(out) {}

    // policy.d syntax. base_dir: the directory of the top-level file.
    void parse_text(std::string_view text, const std::string& path, const std::string& base_dir,
                    int depth);
    void include_file(const Location& where, const std::string& path, const std::string& base_dir,
                      int depth);
    void include_dir(const Location& where, const std::string& dir, const std::string& base_dir,
                     int depth);
    // Legacy syntax for service/argument; legacy !include is relative to include_base.
    void parse_legacy(std::string_view text, const std::string& path, const std::string& service,
                      const std::string& argument, const std::string& include_base, int depth);
    void compat40(const Location& where, int depth);

    // A top-level policy.d file (includes relative to its directory).
    void parse_file(const std::string& path);

  private:
    std::string read(const Location* where, const std::string& path);
    // The text of a file an include directive names, at nesting `depth`.
    std::string read_included(const Location& where, const std::string& path, int depth);
    void directive(const Location& where, const std::vector<std::string>& fields,
                   const std::string& base_dir, int depth);
    Context& ctx_;
    std::vector<Rule>& out_;
};

Token parse_token_or_throw(const Location& where, std::string_view text, Column column) {
    std::string error;
    auto token = parse_token(text, column, &error);
    if (!token) throw PolicySyntaxError(where, error);
    return *token;
}

bool parse_bool(const Location& where, const std::string& key, const std::string& value) {
    if (value == "yes") return true;
    if (value == "no") return false;
    throw PolicySyntaxError(where, fmt::format("{} is {}, but can be only 'yes' or 'no'",
                                               quote_for_message(key), quote_for_message(value)));
}

void validate_service_argument(const Location& where, const std::string& service,
                               const std::string& argument) {
    if (service != "*" && (service.empty() || !all_chars(service, service_char)))
        throw PolicySyntaxError(
            where, fmt::format("invalid service name: {}", quote_for_message(service)));
    if (argument != "*" &&
        (argument.empty() || argument[0] != '+' || !all_chars(argument, argument_char)))
        throw PolicySyntaxError(where,
                                fmt::format("invalid argument: {} (must be * or start with +)",
                                            quote_for_message(argument)));
    if (service == "*" && argument != "*")
        throw PolicySyntaxError(where, "only * argument allowed for * service");
}

// fields: SOURCE TARGET ACTION [PARAM=VALUE...] (service/argument given separately).
Rule make_rule(const Location& where, const std::string& service, const std::string& argument,
               const std::vector<std::string>& fields, size_t first) {
    Rule rule;
    rule.where = where;
    rule.service = service;
    rule.argument = argument;
    validate_service_argument(where, service, argument);
    rule.source = parse_token_or_throw(where, fields[first], Column::Source);
    rule.target = parse_token_or_throw(where, fields[first + 1], Column::Target);
    const std::string& action = fields[first + 2];
    if (action == "allow")
        rule.action = ActionKind::Allow;
    else if (action == "deny")
        rule.action = ActionKind::Deny;
    else if (action == "ask")
        rule.action = ActionKind::Ask;
    else
        throw PolicySyntaxError(where,
                                fmt::format("invalid action: {}", quote_for_message(action)));

    std::map<std::string, std::string> params;
    for (size_t i = first + 3; i < fields.size(); ++i) {
        auto eq = fields[i].find('=');
        if (eq == std::string::npos)
            throw PolicySyntaxError(where, fmt::format("invalid action parameter syntax: {}",
                                                       quote_for_message(fields[i])));
        std::string key = fields[i].substr(0, eq);
        if (params.count(key))
            throw PolicySyntaxError(
                where, fmt::format("parameter given twice: {}", quote_for_message(key)));
        params[key] = fields[i].substr(eq + 1);
    }
    for (const char* key : {"notify", "autostart"})
        if (auto it = params.find(key); it != params.end()) parse_bool(where, key, it->second);

    std::vector<std::string> accepted;
    switch (rule.action) {
    case ActionKind::Deny:
        accepted = {"notify"};
        break;
    case ActionKind::Allow:
        accepted = {"target", "user", "notify", "autostart"};
        break;
    case ActionKind::Ask:
        accepted = {"target", "default_target", "user", "notify", "autostart"};
        break;
    }
    for (const auto& [key, value] : params)
        if (std::find(accepted.begin(), accepted.end(), key) == accepted.end())
            throw PolicySyntaxError(where, fmt::format("invalid parameter {} for action {}",
                                                       quote_for_message(key), action));
    for (const auto& [key, value] : params) {
        if (key == "notify")
            rule.notify = value == "yes";
        else if (key == "autostart")
            rule.autostart = value == "yes";
        else if (key == "user")
            rule.user = value;
        else if (key == "target" || key == "default_target") {
            if (value.empty())
                throw PolicySyntaxError(where, fmt::format("empty value for {}=", key));
            Token token = parse_token_or_throw(where, value, Column::Redirect);
            (key == "target" ? rule.redirect : rule.default_target) = token;
        }
    }
    if (rule.target.kind == TokenKind::Default && rule.action == ActionKind::Allow &&
        !rule.redirect)
        throw PolicySyntaxError(where,
                                "allow action for @default rule must specify target= option");
    return rule;
}

std::string FileParser::read(const Location* where, const std::string& path) {
    std::string error;
    auto text = ctx_.loader.read_file(path, &error);
    if (!text) fail(where, error);
    if (ctx_.files) ctx_.files->push_back(path);
    return std::move(*text);
}

std::string FileParser::read_included(const Location& where, const std::string& path, int depth) {
    if (ctx_.loader.kind(path) != PathKind::File)
        throw PolicySyntaxError(where, fmt::format("not a file: {}", path));
    check_include_depth(where, depth);
    return read(&where, path);
}

void FileParser::parse_file(const std::string& path) {
    std::string text = read(nullptr, path);
    parse_text(text, path, parent_dir(path), 0);
}

void FileParser::parse_text(std::string_view text, const std::string& path,
                            const std::string& base_dir, int depth) {
    for_each_line(text, path, [&](const Location& where, std::string_view line) {
        per_line(ctx_, [&] {
            auto fields = split_fields(line);
            if (line[0] == '!') {
                directive(where, fields, base_dir, depth);
                return;
            }
            if (fields.size() < 5)
                throw PolicySyntaxError(
                    where, fmt::format("wrong number of fields: expected at least 5 (service, "
                                       "argument, source, target, action), got {}",
                                       fields.size()));
            out_.push_back(make_rule(where, fields[0], fields[1], fields, 2));
        });
    });
}

void FileParser::directive(const Location& where, const std::vector<std::string>& fields,
                           const std::string& base_dir, int depth) {
    const std::string& name = fields[0];
    auto want = [&](size_t count) {
        if (fields.size() != count)
            throw PolicySyntaxError(where, fmt::format("invalid number of params to {} "
                                                       "(expected {}, got {})",
                                                       name, count - 1, fields.size() - 1));
    };
    if (name == "!include") {
        want(2);
        include_file(where, resolve(base_dir, fields[1]), base_dir, depth + 1);
    } else if (name == "!include-dir") {
        want(2);
        include_dir(where, resolve(base_dir, fields[1]), base_dir, depth + 1);
    } else if (name == "!include-service") {
        want(4);
        validate_service_argument(where, fields[1], fields[2]);
        std::string path = resolve(base_dir, fields[3]);
        std::string text = read_included(where, path, depth + 1);
        parse_legacy(text, path, fields[1], fields[2], base_dir, depth + 1);
    } else if (name == "!compat-4.0") {
        want(1);
        if (depth > 0) throw PolicySyntaxError(where, "!compat-4.0 is not recursive");
        compat40(where, depth + 1);
    } else {
        throw PolicySyntaxError(where,
                                fmt::format("invalid directive: {}", quote_for_message(name)));
    }
}

void FileParser::include_file(const Location& where, const std::string& path,
                              const std::string& base_dir, int depth) {
    std::string text = read_included(where, path, depth);
    parse_text(text, path, base_dir, depth);
}

using OnError = std::function<void(const std::string&)>;

// The §1-filtered policy files of dir (names), sorted. A listing error or an invalid
// name goes to on_error (in listing order) and is left out.
std::vector<std::string> scan_policy_dir(const Loader& loader, const std::string& dir,
                                         const OnError& on_error) {
    std::string error;
    auto names = loader.list_dir(dir, &error);
    if (!names) {
        on_error(error);
        return {};
    }
    std::vector<std::string> out;
    for (const auto& name : *names) {
        if (!is_policy_file_name(name)) continue;
        if (loader.kind(dir + "/" + name) != PathKind::File) continue;
        if (!is_valid_policy_file_name(name)) {
            on_error(fmt::format("invalid policy file name {} (allowed characters: [0-9a-z_.-])",
                                 dir + "/" + name));
            continue;
        }
        out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// scan_policy_dir that throws at the first error.
std::vector<std::string> policy_files_in(const Loader& loader, const Location* where,
                                         const std::string& dir) {
    return scan_policy_dir(loader, dir, [&](const std::string& message) { fail(where, message); });
}

// The top-level files of the policy directories, merged by basename (the first
// directory that has a name wins), in name order. Errors go to on_error.
std::vector<std::string> merged_policy_files(const Loader& loader, const PolicyPaths& paths,
                                             const OnError& on_error) {
    std::map<std::string, std::string> merged;
    for (const auto& dir : paths.dirs) {
        if (loader.kind(dir) != PathKind::Directory) {
            on_error(fmt::format("policy directory {} does not exist or is not a directory", dir));
            continue;
        }
        for (const auto& name : scan_policy_dir(loader, dir, on_error))
            merged.emplace(name, dir + "/" + name);
    }
    std::vector<std::string> files;
    for (const auto& entry : merged)
        files.push_back(entry.second);
    return files;
}

// Each file as a top-level file; in lint mode a file that cannot be read is an error
// and the others are still parsed.
void parse_files(Context& ctx, FileParser& parser, const std::vector<std::string>& files) {
    for (const auto& path : files)
        per_line(ctx, [&] { parser.parse_file(path); });
}

void FileParser::include_dir(const Location& where, const std::string& dir,
                             const std::string& base_dir, int depth) {
    if (ctx_.loader.kind(dir) != PathKind::Directory)
        throw PolicySyntaxError(where, fmt::format("not a directory: {}", dir));
    check_include_depth(where, depth);
    for (const auto& name : policy_files_in(ctx_.loader, &where, dir)) {
        std::string path = dir + "/" + name;
        std::string text = read(&where, path);
        parse_text(text, path, base_dir, depth);
    }
}

void FileParser::parse_legacy(std::string_view text, const std::string& path,
                              const std::string& service, const std::string& argument,
                              const std::string& include_base, int depth) {
    for_each_line(text, path, [&](const Location& where, std::string_view stripped) {
        per_line(ctx_, [&] {
            // The R4.0 spelling: $include:PATH, $keywords, comma-separated parameters.
            std::string line(stripped);
            if (line.starts_with("$include:")) line = "!include " + line.substr(9);
            std::replace(line.begin(), line.end(), '$', '@');
            std::replace(line.begin(), line.end(), ',', ' ');
            auto fields = split_fields(line);
            if (line[0] == '!') {
                if (fields[0] != "!include")
                    throw PolicySyntaxError(where, fmt::format("invalid directive {} in legacy "
                                                               "policy file",
                                                               quote_for_message(fields[0])));
                if (fields.size() != 2)
                    throw PolicySyntaxError(where, "invalid number of params to !include");
                std::string target = resolve(include_base, fields[1]);
                std::string included = read_included(where, target, depth + 1);
                parse_legacy(included, target, service, argument, include_base, depth + 1);
                return;
            }
            if (fields.size() < 3)
                throw PolicySyntaxError(
                    where, fmt::format("wrong number of fields: expected at least 3 (source, "
                                       "target, action), got {}",
                                       fields.size()));
            out_.push_back(make_rule(where, service, argument, fields, 0));
        });
    });
}

bool legacy_name_char(char c) {
    return argument_char(c);
}

void FileParser::compat40(const Location& where, int depth) {
    if (ctx_.warnings)
        ctx_.warnings->push_back(where.str() + ": !compat-4.0 is deprecated: move the rules of " +
                                 ctx_.legacy_dir + " to policy.d");
    const std::string& dir = ctx_.legacy_dir;
    // Errata 6: a missing legacy directory fails the whole policy (upstream's wording).
    if (PathKind kind = ctx_.loader.kind(dir); kind != PathKind::Directory)
        throw PolicySyntaxError(where, fmt::format("failed to load {} file: {}", dir,
                                                   kind == PathKind::Missing
                                                       ? "[Errno 2] No such file or directory"
                                                       : "[Errno 20] Not a directory"));
    std::string error;
    auto names = ctx_.loader.list_dir(dir, &error);
    if (!names) throw PolicySyntaxError(where, error);
    // service -> [(argument, file)]; "*" (argument-less file) sorts last.
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> services;
    for (const auto& name : *names) {
        if (name.empty() || name[0] == '.' || name.ends_with(".rpmsave") ||
            name.ends_with(".rpmnew") || name.ends_with(".swp"))
            continue;
        if (!all_chars(name, legacy_name_char)) continue;
        if (ctx_.loader.kind(dir + "/" + name) != PathKind::File) continue;
        auto plus = name.find('+');
        std::string service = plus == std::string::npos ? name : name.substr(0, plus);
        std::string argument = plus == std::string::npos ? "*" : name.substr(plus);
        services[service].emplace_back(argument, name);
    }
    for (auto& [service, files] : services) {
        std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
            if ((a.first == "*") != (b.first == "*")) return b.first == "*";
            return a.first < b.first;
        });
        for (const auto& [argument, name] : files) {
            std::string path = dir + "/" + name;
            std::string text = read(&where, path);
            Location file_where{path, 0};
            try {
                validate_service_argument(file_where, service, argument);
            } catch (const PolicySyntaxError&) {
                throw PolicySyntaxError(where,
                                        fmt::format("invalid legacy policy file name {}", path));
            }
            parse_legacy(text, path, service, argument, dir, depth);
            if (argument != "*") {
                // The R4.0 per-file "nothing matched -> deny".
                Location implicit{path, static_cast<int>(split_lines(text).size()) + 1};
                std::vector<std::string> any{"@anyvm", "@anyvm", "deny"};
                out_.push_back(make_rule(implicit, service, argument, any, 0));
                std::vector<std::string> admin{"@anyvm", "@adminvm", "deny"};
                out_.push_back(make_rule(implicit, service, argument, admin, 0));
            }
        }
    }
}

} // namespace

PolicySyntaxError::PolicySyntaxError(const Location& where, const std::string& message)
    : std::runtime_error(where.str() + ": " + message), where_(where), message_(message) {}

PolicySyntaxError::PolicySyntaxError(const std::string& message)
    : std::runtime_error(message), message_(message) {}

std::optional<Token> parse_token(std::string_view text, Column column, std::string* error) {
    auto fail = [&](std::string message) -> std::optional<Token> {
        if (error) *error = std::move(message);
        return std::nullopt;
    };
    Token token;
    token.text = std::string(text);
    if (text.empty()) return fail(fmt::format("empty {} token", column_name(column)));
    if (text == "*") {
        token.kind = TokenKind::Any;
    } else if (text[0] != '@') {
        token.kind = TokenKind::Literal;
        token.value = token.text;
    } else if (text == "@adminvm") {
        token.kind = TokenKind::AdminVM;
    } else if (text == "@anyvm") {
        token.kind = TokenKind::AnyVM;
    } else if (text == "@default") {
        token.kind = TokenKind::Default;
    } else if (text == "@dispvm") {
        token.kind = TokenKind::DispVM;
    } else {
        // Longest prefix first so @dispvm:@tag: is not read as @dispvm: + "@tag:...".
        static constexpr std::pair<std::string_view, TokenKind> prefixes[] = {
            {"@dispvm:@tag:", TokenKind::DispVMTag},
            {"@dispvm:", TokenKind::DispVMTemplate},
            {"@type:", TokenKind::Type},
            {"@tag:", TokenKind::Tag},
        };
        bool found = false;
        for (const auto& [prefix, kind] : prefixes) {
            if (!text.starts_with(prefix)) continue;
            std::string_view value = text.substr(prefix.size());
            if (value.empty())
                return fail(
                    fmt::format("invalid empty {} token: {}", prefix, quote_for_message(text)));
            if (value[0] == '@') continue; // not a valid sub-keyword here
            token.kind = kind;
            token.value = std::string(value);
            found = true;
            break;
        }
        if (!found)
            return fail(
                fmt::format("invalid {} token: {}", column_name(column), quote_for_message(text)));
    }
    if (!allowed_in(token.kind, column))
        return fail(fmt::format("invalid {} token: {} is not allowed in this column",
                                column_name(column), quote_for_message(text)));
    return token;
}

std::string_view action_name(ActionKind kind) {
    switch (kind) {
    case ActionKind::Allow:
        return "allow";
    case ActionKind::Deny:
        return "deny";
    case ActionKind::Ask:
        return "ask";
    }
    return "?";
}

std::string format_rule(const Rule& rule) {
    std::string out = fmt::format("{}\t{}\t{}\t{}\t{}", rule.service, rule.argument,
                                  rule.source.text, rule.target.text, action_name(rule.action));
    if (rule.redirect) out += " target=" + rule.redirect->text;
    if (rule.default_target) out += " default_target=" + rule.default_target->text;
    if (rule.user) out += " user=" + *rule.user;
    if (rule.notify) out += std::string(" notify=") + (*rule.notify ? "yes" : "no");
    if (rule.autostart) out += std::string(" autostart=") + (*rule.autostart ? "yes" : "no");
    return out;
}

std::vector<std::string> PolicyPaths::default_dirs() {
    return {"/run/qubes/policy.d", "/etc/qubes/policy.d"};
}

std::vector<std::string> split_dir_list(std::string_view list) {
    std::vector<std::string> dirs;
    while (!list.empty()) {
        auto colon = list.find(':');
        std::string_view part = list.substr(0, colon);
        if (!part.empty()) dirs.emplace_back(part);
        if (colon == std::string_view::npos) break;
        list.remove_prefix(colon + 1);
    }
    return dirs;
}

PolicyPaths PolicyPaths::from_env() {
    PolicyPaths paths;
    paths.dirs = default_dirs();
    if (const char* env = std::getenv("QREXEC_POLICY_DIR"); env && *env)
        paths.dirs = split_dir_list(env);
    if (const char* env = std::getenv("QREXEC_LEGACY_POLICY_DIR"); env && *env)
        paths.legacy_dir = env;
    return paths;
}

bool is_policy_file_name(std::string_view name) {
    return !name.empty() && name[0] != '.' && name.ends_with(".policy");
}

bool is_valid_policy_file_name(std::string_view name) {
    return all_chars(name, lower_name_char);
}

std::vector<Rule> parse_policy_text(const Loader& loader, std::string_view text,
                                    const std::string& path, const std::string& legacy_dir,
                                    std::vector<std::string>* warnings) {
    std::vector<Rule> rules;
    Context ctx{loader, legacy_dir, warnings, nullptr};
    FileParser parser(ctx, rules);
    parser.parse_text(text, path, parent_dir(path), 0);
    return rules;
}

std::vector<Rule> parse_legacy_text(const Loader& loader, std::string_view text,
                                    const std::string& path, const std::string& service,
                                    const std::string& argument, const std::string& base_dir) {
    std::vector<Rule> rules;
    Context ctx{loader, base_dir, nullptr, nullptr};
    FileParser parser(ctx, rules);
    parser.parse_legacy(text, path, service, argument, base_dir, 0);
    return rules;
}

Policy load_policy(const Loader& loader, const PolicyPaths& paths) {
    Policy policy;
    Context ctx{loader, paths.legacy_dir, &policy.warnings, &policy.files};
    try {
        auto files = merged_policy_files(
            loader, paths, [](const std::string& message) { fail(nullptr, message); });
        FileParser parser(ctx, policy.rules);
        parse_files(ctx, parser, files);
    } catch (const PolicySyntaxError& e) {
        policy.rules.clear();
        policy.error = e.what();
        policy.error_location = e.where();
    }
    return policy;
}

LintReport lint_policy(const Loader& loader, const PolicyPaths& paths) {
    LintReport report;
    auto files = merged_policy_files(
        loader, paths, [&](const std::string& message) { report.errors.emplace_back(message); });
    Context ctx{loader, paths.legacy_dir, &report.warnings, &report.files, &report.errors};
    FileParser parser(ctx, report.rules);
    parse_files(ctx, parser, files);
    return report;
}

LintReport lint_files(const Loader& loader, const std::vector<std::string>& files,
                      const std::string& legacy_dir) {
    LintReport report;
    Context ctx{loader, legacy_dir, &report.warnings, &report.files, &report.errors};
    FileParser parser(ctx, report.rules);
    parse_files(ctx, parser, files);
    return report;
}

} // namespace qrexec::policy
