#include "lab/labfile.h"

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <sstream>

namespace qrexec::lab {
namespace fs = std::filesystem;

const Domain* Lab::find(std::string_view domain_name) const {
    for (const auto& d : domains)
        if (d.name == domain_name) return &d;
    return nullptr;
}

std::string Diagnostic::format() const {
    std::string out = line > 0 ? fmt::format("{}:{}: {}", file, line, message)
                               : fmt::format("{}: {}", file, message);
    if (!hint.empty()) out += fmt::format("\n  hint: {}", hint);
    return out;
}

const char* isolation_name(Isolation isolation) {
    return isolation == Isolation::sandbox ? "sandbox" : "none";
}

bool RealHost::is_dir(const std::string& path) const {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool RealHost::is_regular_file(const std::string& path) const {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool RealHost::user_exists(const std::string& user) const {
    return getpwnam(user.c_str()) != nullptr;
}
std::vector<std::string> RealHost::list_dir(const std::string& path) const {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(path, ec))
        names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

namespace {

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

} // namespace

std::optional<std::string> check_domain_name(std::string_view name) {
    if (name.empty()) return "a domain name cannot be empty";
    if (name.size() > 31) return fmt::format("domain name '{}' is longer than 31 characters", name);
    char first = name.front();
    if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z')))
        return fmt::format("domain name '{}' must start with a letter", name);
    for (char c : name)
        if (!is_name_char(c))
            return fmt::format("domain name '{}' contains '{}'; only letters, digits, '_', '.' "
                               "and '-' are allowed",
                               name, c);
    if (name == "dom0") return "dom0 is implicit; configure it in the [dom0] table";
    if (name == "none" || name == "default") return fmt::format("'{}' is a reserved name", name);
    if (name.size() >= 3 && name.substr(name.size() - 3) == "-dm")
        return fmt::format("domain name '{}' must not end in '-dm' (reserved for stub domains)",
                           name);
    return std::nullopt;
}

std::optional<std::string> check_tag(std::string_view tag) {
    if (tag.empty()) return "a tag cannot be empty";
    if (tag.size() > 63) return fmt::format("tag '{}' is longer than 63 characters", tag);
    for (char c : tag)
        if (!is_name_char(c) || c == '.')
            return fmt::format("tag '{}' contains '{}'; use letters, digits, '_' and '-'", tag, c);
    return std::nullopt;
}

std::optional<std::string> check_user_name(std::string_view user) {
    if (user.empty()) return "a user name cannot be empty";
    if (user.size() > 32) return fmt::format("user name '{}' is too long", user);
    for (char c : user)
        if (!is_name_char(c) || c == '.')
            return fmt::format("user name '{}' contains '{}'", user, c);
    if (user.front() == '-') return fmt::format("user name '{}' starts with '-'", user);
    return std::nullopt;
}

std::optional<std::string> check_policy_file_name(std::string_view name) {
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return fmt::format("policy file name '{}' contains '{}'; the policy engine would "
                               "then deny every call",
                               name, c);
    return std::nullopt;
}

std::string domain_uuid(std::string_view name) {
    if (name == "dom0") return "00000000-0000-0000-0000-000000000000";
    // Two FNV-1a passes with different seeds: stable, and distinct enough for a lab.
    auto fnv = [&](uint64_t seed) {
        uint64_t h = seed;
        for (char c : name) {
            h ^= static_cast<unsigned char>(c);
            h *= 1099511628211ULL;
        }
        return h;
    };
    uint64_t hi = fnv(14695981039346656037ULL);
    uint64_t lo = fnv(hi ^ 0x9e3779b97f4a7c15ULL);
    // Shape it as a version-4/variant-1 UUID so tools that check the format accept it.
    hi = (hi & ~0xf000ULL) | 0x4000ULL;
    lo = (lo & ~(0xc000ULL << 48)) | (0x8000ULL << 48);
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff,
                       hi & 0xffff, lo >> 48, lo & 0xffffffffffffULL);
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j)
        prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min(
                {prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string suggest(std::string_view key, std::span<const std::string_view> allowed) {
    std::string_view best;
    size_t best_distance = 3; // only close misspellings are worth a "did you mean"
    for (auto candidate : allowed) {
        size_t d = edit_distance(key, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = candidate;
        }
    }
    std::string list;
    for (auto candidate : allowed)
        list += fmt::format("{}{}", list.empty() ? "" : ", ", candidate);
    if (!best.empty()) return fmt::format("did you mean '{}'? (allowed: {})", best, list);
    return fmt::format("allowed keys here: {}", list);
}

int line_of(const toml::node& node) {
    return static_cast<int>(node.source().begin.line);
}

class Parser {
  public:
    Parser(std::string path, std::string base_dir, const Host& host)
        : path_(std::move(path)), base_(std::move(base_dir)), host_(host) {}

    ParseResult run(std::string_view text) {
        toml::table root;
        try {
            root = toml::parse(text, path_);
        } catch (const toml::parse_error& e) {
            error(static_cast<int>(e.source().begin.line), std::string(e.description()),
                  "fix the TOML syntax at that line (strings need quotes, one key per line)");
            return finish();
        }
        static constexpr std::array<std::string_view, 3> top_keys{"lab", "dom0", "domain"};
        check_keys(root, top_keys, "at the top level");
        lab_.file = path_;
        lab_.name = fs::path(path_).stem().string();
        parse_lab_table(root);
        parse_dom0(root);
        parse_domains(root);
        if (errors_.empty()) cross_checks();
        return finish();
    }

  private:
    void error(int line, std::string message, std::string hint) {
        errors_.push_back({path_, line, std::move(message), std::move(hint)});
    }

    void check_keys(const toml::table& table, std::span<const std::string_view> allowed,
                    std::string_view where) {
        for (auto&& [key, node] : table) {
            if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
            int line = static_cast<int>(key.source().begin.line);
            if (line == 0) line = line_of(node);
            error(line, fmt::format("unknown key '{}' {}", key.str(), where),
                  suggest(key.str(), allowed));
        }
    }

    std::optional<std::string> get_string(const toml::table& table, std::string_view key,
                                          int fallback_line) {
        const toml::node* node = table.get(key);
        if (!node) return std::nullopt;
        if (auto s = node->value<std::string>()) return *s;
        error(line_of(*node) ? line_of(*node) : fallback_line,
              fmt::format("'{}' must be a string", key),
              fmt::format("write it in quotes, e.g. {} = \"...\"", key));
        return std::nullopt;
    }

    // A folder setting: resolved against the lab file's folder; must exist.
    std::optional<std::string> get_folder(const toml::table& table, std::string_view key,
                                          int fallback_line, std::string_view what) {
        auto value = get_string(table, key, fallback_line);
        if (!value) return std::nullopt;
        const toml::node* node = table.get(key);
        int line = line_of(*node) ? line_of(*node) : fallback_line;
        if (value->empty()) {
            error(line, fmt::format("'{}' is empty", key),
                  "name a folder, relative to the lab file");
            return std::nullopt;
        }
        fs::path p(*value);
        if (p.is_relative()) p = fs::path(base_) / p;
        std::string resolved = p.lexically_normal().string();
        if (resolved.size() > 1 && resolved.back() == '/') resolved.pop_back();
        if (!host_.is_dir(resolved)) {
            error(line, fmt::format("{} folder '{}' does not exist ({})", what, *value, resolved),
                  fmt::format("create it (mkdir -p {}) or fix the path; relative paths start at "
                              "the lab file's folder",
                              resolved));
            return std::nullopt;
        }
        return resolved;
    }

    void parse_lab_table(const toml::table& root) {
        const toml::node* node = root.get("lab");
        if (!node) {
            error(1, "missing [lab] table", "add a [lab] table with policy = \"<folder>\"");
            return;
        }
        const toml::table* table = node->as_table();
        if (!table) {
            error(line_of(*node), "'lab' must be a table", "write it as [lab] on its own line");
            return;
        }
        static constexpr std::array<std::string_view, 3> keys{"name", "policy", "ask"};
        check_keys(*table, keys, "in [lab]");
        int line = line_of(*table);
        if (auto name = get_string(*table, "name", line)) lab_.name = *name;
        if (!table->get("policy"))
            error(line, "[lab] has no 'policy' folder",
                  "add policy = \"policy\" (a folder of *.policy files)");
        else if (auto folder = get_folder(*table, "policy", line, "policy"))
            lab_.policy = *folder;
        if (auto ask = get_string(*table, "ask", line)) {
            if (*ask == "deny")
                lab_.ask = AskFallback::deny;
            else if (*ask == "allow")
                lab_.ask = AskFallback::allow;
            else
                error(line_of(*table->get("ask")), fmt::format("ask = '{}' is not valid", *ask),
                      "use ask = \"deny\" or ask = \"allow\" (what 'ask' rules do with no "
                      "terminal)");
        }
    }

    void parse_dom0(const toml::table& root) {
        const toml::node* node = root.get("dom0");
        if (!node) return;
        const toml::table* table = node->as_table();
        if (!table) {
            error(line_of(*node), "'dom0' must be a table", "write it as [dom0] on its own line");
            return;
        }
        static constexpr std::array<std::string_view, 2> keys{"services", "rpc_config"};
        check_keys(*table, keys, "in [dom0]");
        int line = line_of(*table);
        if (auto f = get_folder(*table, "services", line, "services")) lab_.dom0.services = *f;
        if (auto f = get_folder(*table, "rpc_config", line, "rpc-config"))
            lab_.dom0.rpc_config = *f;
    }

    void parse_domains(const toml::table& root) {
        const toml::node* node = root.get("domain");
        if (!node) {
            error(1, "the lab has no domains",
                  "add at least one [[domain]] table with name and services");
            return;
        }
        const toml::array* array = node->as_array();
        if (!array || !array->is_array_of_tables()) {
            error(line_of(*node), "'domain' must be an array of tables",
                  "write each domain as a [[domain]] table");
            return;
        }
        std::map<std::string, int> seen;
        for (const toml::node& element : *array) {
            const toml::table& table = *element.as_table();
            Domain domain;
            domain.line = line_of(table);
            if (parse_domain(table, domain)) {
                auto [it, inserted] = seen.emplace(domain.name, domain.line);
                if (!inserted) {
                    error(domain.line, fmt::format("duplicate domain name '{}'", domain.name),
                          fmt::format("rename one of them; '{}' is already defined at line {}",
                                      domain.name, it->second));
                    continue;
                }
                domain.domid = static_cast<int>(lab_.domains.size()) + 1;
                domain.uuid = domain_uuid(domain.name);
                lab_.domains.push_back(std::move(domain));
            }
        }
        if (lab_.domains.size() > 200)
            error(1, "too many domains", "a lab supports at most 200 domains");
    }

    bool parse_domain(const toml::table& table, Domain& d) {
        static constexpr std::array<std::string_view, 8> keys{
            "name", "type", "tags", "services", "rpc_config", "folder", "user", "isolation"};
        size_t before = errors_.size();
        check_keys(table, keys, "in [[domain]]");
        int line = d.line;
        auto name = get_string(table, "name", line);
        if (!name) {
            if (!table.get("name"))
                error(line, "[[domain]] has no name", "add name = \"work\" (letters first)");
        } else if (auto problem = check_domain_name(*name)) {
            error(line_of(*table.get("name")), *problem,
                  "use a name like \"work\" or \"vault-1\" (letter first, max 31 chars)");
        } else {
            d.name = *name;
        }
        if (auto type = get_string(table, "type", line)) {
            static constexpr std::array<std::string_view, 3> types{"AppVM", "TemplateVM",
                                                                   "StandaloneVM"};
            if (std::find(types.begin(), types.end(), *type) == types.end())
                error(line_of(*table.get("type")), fmt::format("type '{}' is not supported", *type),
                      "use \"AppVM\", \"TemplateVM\" or \"StandaloneVM\"");
            else
                d.type = *type;
        }
        if (const toml::node* tags = table.get("tags")) {
            const toml::array* list = tags->as_array();
            if (!list) {
                error(line_of(*tags), "'tags' must be a list of strings",
                      "write tags = [\"trusted\", \"work\"]");
            } else {
                for (const toml::node& tag : *list) {
                    auto text = tag.value<std::string>();
                    if (!text) {
                        error(line_of(tag), "'tags' must contain strings only",
                              "quote each tag: tags = [\"trusted\"]");
                    } else if (auto problem = check_tag(*text)) {
                        error(line_of(tag), *problem, "tags use letters, digits, '_' and '-'");
                    } else if (std::find(d.tags.begin(), d.tags.end(), *text) != d.tags.end()) {
                        error(line_of(tag), fmt::format("tag '{}' is listed twice", *text),
                              "remove the duplicate");
                    } else {
                        d.tags.push_back(*text);
                    }
                }
            }
        }
        if (!table.get("services"))
            error(line, fmt::format("domain '{}' has no services folder", d.name),
                  "add services = \"<name>/rpc\" (a folder of service programs)");
        else if (auto f = get_folder(table, "services", line, "services"))
            d.services = *f;
        if (auto f = get_folder(table, "rpc_config", line, "rpc-config")) d.rpc_config = *f;
        if (table.get("folder")) {
            if (auto f = get_folder(table, "folder", line, "domain")) d.folder = *f;
        } else if (!d.services.empty()) {
            d.folder = fs::path(d.services).parent_path().string();
        }
        if (auto user = get_string(table, "user", line)) {
            int uline = line_of(*table.get("user"));
            if (auto problem = check_user_name(*user))
                error(uline, *problem, "use an existing Unix user name");
            else if (!host_.user_exists(*user))
                error(uline, fmt::format("user '{}' does not exist on this machine", *user),
                      fmt::format("create it (useradd {}) or remove the 'user' key", *user));
            else
                d.user = *user;
        }
        if (auto iso = get_string(table, "isolation", line)) {
            if (*iso == "sandbox")
                d.isolation = Isolation::sandbox;
            else if (*iso == "none")
                d.isolation = Isolation::none;
            else
                error(line_of(*table.get("isolation")),
                      fmt::format("isolation '{}' is not valid", *iso),
                      "use isolation = \"none\" (default) or \"sandbox\" (bubblewrap)");
        }
        return errors_.size() == before;
    }

    static bool inside(const std::string& path, const std::string& dir) {
        if (dir == "/") return true;
        return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                               path[dir.size()] == '/');
    }

    void cross_checks() {
        for (const auto& d : lab_.domains) {
            if (!inside(d.services, d.folder))
                error(d.line,
                      fmt::format("services folder of '{}' is outside its folder '{}'", d.name,
                                  d.folder),
                      "put the services inside the domain's folder or set folder = ...");
            if (!d.rpc_config.empty() && !inside(d.rpc_config, d.folder))
                error(d.line,
                      fmt::format("rpc_config folder of '{}' is outside its folder '{}'", d.name,
                                  d.folder),
                      "put rpc-config inside the domain's folder or set folder = ...");
            if (d.isolation != Isolation::sandbox) continue;
            // A sandbox shows only the domain's folder: it must not contain, or lie
            // inside, another domain's folder or the policy.
            if (inside(lab_.policy, d.folder))
                error(d.line,
                      fmt::format("sandboxed domain '{}' would see the policy folder", d.name),
                      "give the domain its own folder (folder = \"<name>\") apart from the policy");
            for (const auto& other : lab_.domains) {
                if (&other == &d) continue;
                if (inside(other.folder, d.folder) || inside(d.folder, other.folder))
                    error(d.line,
                          fmt::format("sandboxed domain '{}' shares its folder with '{}' ({})",
                                      d.name, other.name, d.folder),
                          "give each domain its own folder, e.g. folder = \"<name>\"");
            }
        }
        // The policy engine rejects the whole policy if one file name is bad.
        for (const auto& name : host_.list_dir(lab_.policy)) {
            if (name.empty() || name.front() == '.') continue;
            if (name.size() < 7 || name.substr(name.size() - 7) != ".policy") continue;
            if (auto problem = check_policy_file_name(name))
                error(0, fmt::format("{}/{}: {}", lab_.policy, name, *problem),
                      "rename it using only a-z, 0-9, '_', '.' and '-'");
        }
    }

    ParseResult finish() {
        ParseResult result;
        std::stable_sort(errors_.begin(), errors_.end(),
                         [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
        if (errors_.empty())
            result.lab = std::move(lab_);
        else
            result.errors = std::move(errors_);
        return result;
    }

    std::string path_;
    std::string base_;
    const Host& host_;
    Lab lab_;
    std::vector<Diagnostic> errors_;
};

} // namespace

ParseResult parse_lab(std::string_view text, const std::string& path, const std::string& base_dir,
                      const Host& host) {
    return Parser(path, base_dir, host).run(text);
}

ParseResult load_lab(const std::string& path, const Host& host) {
    std::ifstream in(path);
    if (!in) {
        ParseResult r;
        r.errors.push_back({path, 0, "cannot read the lab file",
                            "check the path, or run 'qrexec-lab up' with a lab file argument"});
        return r;
    }
    std::stringstream text;
    text << in.rdbuf();
    std::error_code ec;
    fs::path abs = fs::absolute(path, ec);
    return parse_lab(text.str(), abs.string(), abs.parent_path().string(), host);
}

} // namespace qrexec::lab
