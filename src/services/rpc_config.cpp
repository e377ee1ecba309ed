#include "services/rpc_config.h"

#include "io/fd.h"
#include "io/log.h"
#include "services/lookup.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <set>

namespace qrexec::services {
namespace {

// A local, root-owned file; the bound only protects against a runaway file.
constexpr size_t kMaxConfigFileSize = 1 << 20;

bool is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_blank(char c) {
    return c == ' ' || c == '\t';
}
bool is_key_char(char c) {
    return is_letter(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
}

// A parsed value (a plain struct: std::variant with a string trips g++ 12's
// -Wmaybe-uninitialized under the sanitizers).
struct Value {
    enum class Kind { Bool, Integer, String } kind = Kind::Bool;
    bool boolean = false;
    int64_t integer = 0;
    std::string text;

    static Value of_bool(bool b) { return Value{Kind::Bool, b, 0, {}}; }
    static Value of_int(int64_t n) { return Value{Kind::Integer, false, n, {}}; }
    static Value of_text(std::string_view t) {
        return Value{Kind::String, false, 0, std::string(t)};
    }
};

struct LineParser {
    std::string_view line;
    size_t pos = 0;

    bool at_end() const { return pos >= line.size(); }
    char peek() const { return line[pos]; }
    void skip_blanks() {
        while (!at_end() && is_blank(peek()))
            ++pos;
    }
};

bool set_error(std::string* error, std::string message) {
    if (error) *error = std::move(message);
    return false;
}

std::optional<Value> parse_value(LineParser& p, std::string* error) {
    std::string_view rest = p.line.substr(p.pos);
    if (rest.empty() || rest.front() == '#') {
        set_error(error, "missing value");
        return std::nullopt;
    }
    if (rest.starts_with("true")) {
        p.pos += 4;
        return Value::of_bool(true);
    }
    if (rest.starts_with("false")) {
        p.pos += 5;
        return Value::of_bool(false);
    }
    if (is_digit(rest.front())) {
        if (rest.front() == '0') {
            ++p.pos; // "0"; a following digit is junk ("00", "01" are errors)
            return Value::of_int(0);
        }
        int64_t value = 0;
        while (!p.at_end() && is_digit(p.peek())) {
            int digit = p.peek() - '0';
            if (value > (INT64_MAX - digit) / 10) {
                set_error(error, "integer out of range");
                return std::nullopt;
            }
            value = value * 10 + digit;
            ++p.pos;
        }
        return Value::of_int(value);
    }
    if (rest.front() == '\'') {
        if (rest.starts_with("'''")) {
            set_error(error, "multi-line strings are not supported");
            return std::nullopt;
        }
        auto close = rest.find('\'', 1);
        if (close == std::string_view::npos) {
            set_error(error, "unterminated string");
            return std::nullopt;
        }
        p.pos += close + 1;
        return Value::of_text(rest.substr(1, close - 1));
    }
    if (rest.front() == '"') {
        set_error(error, "double-quoted strings are not supported");
        return std::nullopt;
    }
    set_error(error, "unsupported value");
    return std::nullopt;
}

bool apply_bool(const Value& value, bool& field, std::string_view key, std::string* error) {
    if (value.kind == Value::Kind::Bool) {
        field = value.boolean;
        return true;
    }
    return set_error(error, std::string(key) + " must be a boolean");
}

bool apply_key(std::string_view key, const Value& value, RpcConfig& config, std::string* error) {
    if (key == "wait-for-session") {
        if (value.kind == Value::Kind::Integer) {
            if (value.integer != 0 && value.integer != 1)
                return set_error(error, "wait-for-session must be a boolean or 0/1");
            config.wait_for_session = value.integer == 1;
            return true;
        }
        return apply_bool(value, config.wait_for_session, key, error);
    }
    if (key == "force-user") {
        if (value.kind != Value::Kind::String)
            return set_error(error, "force-user must be a string");
        // An empty user name can never be switched to; reject it here with a clear reason.
        if (value.text.empty()) return set_error(error, "force-user must not be empty");
        config.force_user = value.text;
        return true;
    }
    if (key == "skip-service-descriptor")
        return apply_bool(value, config.skip_service_descriptor, key, error);
    if (key == "exit-on-client-eof")
        return apply_bool(value, config.exit_on_client_eof, key, error);
    if (key == "exit-on-service-eof")
        return apply_bool(value, config.exit_on_service_eof, key, error);
    QLOG("Unsupported rpc-config key ignored: {}", key);
    return true;
}

// One non-empty, non-comment line (CR and trailing blanks already removed).
bool parse_line(std::string_view line, RpcConfig& config, std::set<std::string>& seen,
                std::string* error) {
    char first = line.front();
    if (is_blank(first)) return set_error(error, "line starts with whitespace");
    if (first == '[') return set_error(error, "tables are not supported");
    if (!is_letter(first)) return set_error(error, "line must start with a key");
    LineParser p{line};
    while (!p.at_end() && is_key_char(p.peek()))
        ++p.pos;
    std::string key(line.substr(0, p.pos));
    p.skip_blanks();
    if (p.at_end() || p.peek() != '=') return set_error(error, "missing '=' after " + key);
    ++p.pos;
    p.skip_blanks();
    auto value = parse_value(p, error);
    if (!value) return false;
    p.skip_blanks();
    if (!p.at_end() && p.peek() != '#') return set_error(error, "junk after the value of " + key);
    if (!seen.insert(key).second) return set_error(error, "duplicate key " + key);
    return apply_key(key, *value, config, error);
}

} // namespace

std::optional<RpcConfig> parse_rpc_config(std::string_view content, std::string* error) {
    if (content.find('\0') != std::string_view::npos) {
        set_error(error, "NUL byte in the file");
        return std::nullopt;
    }
    RpcConfig config;
    std::set<std::string> seen;
    size_t pos = 0;
    int line_number = 0;
    while (pos < content.size()) {
        size_t end = content.find('\n', pos);
        if (end == std::string_view::npos) end = content.size();
        std::string_view line = content.substr(pos, end - pos);
        pos = end + 1;
        ++line_number;
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        // Trailing blanks are insignificant, but a blank-only line is an error.
        if (!is_blank(line.front())) {
            while (!line.empty() && is_blank(line.back()))
                line.remove_suffix(1);
        }
        std::string line_error;
        if (!parse_line(line, config, seen, &line_error)) {
            set_error(error, "line " + std::to_string(line_number) + ": " + line_error);
            return std::nullopt;
        }
    }
    if (config.force_user && (config.skip_service_descriptor || config.exit_on_client_eof ||
                              config.exit_on_service_eof)) {
        set_error(error, "force-user cannot be combined with skip-service-descriptor, "
                         "exit-on-client-eof or exit-on-service-eof");
        return std::nullopt;
    }
    return config;
}

ConfigLoad load_rpc_config(const std::vector<std::string>& config_dirs,
                           const ParsedCommand& command) {
    ConfigLoad load;
    FindResult found = find(config_dirs, command.lookup_descriptor, LookupMode::Config);
    if (found.status == LookupStatus::NotFound)
        found = find(config_dirs, command.service_name, LookupMode::Config);
    if (found.status == LookupStatus::NotFound) {
        load.ok = true;
        return load;
    }
    if (found.status == LookupStatus::Error) {
        load.error = "Error looking up rpc-config for " + command.descriptor + ": " +
                     io::errno_text(found.error_number);
        return load;
    }
    io::Fd fd(open(found.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) {
        load.error = "Cannot open rpc-config " + found.path + ": " + io::errno_text(errno);
        return load;
    }
    std::string content;
    char buffer[4096];
    for (;;) {
        ssize_t n = read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            load.error = "Cannot read rpc-config " + found.path + ": " + io::errno_text(errno);
            return load;
        }
        if (n == 0) break;
        content.append(buffer, static_cast<size_t>(n));
        if (content.size() > kMaxConfigFileSize) {
            load.error = "rpc-config " + found.path + " is too large";
            return load;
        }
    }
    std::string error;
    auto config = parse_rpc_config(content, &error);
    if (!config) {
        load.error = "Invalid rpc-config " + found.path + ": " + error;
        return load;
    }
    load.ok = true;
    load.config = std::move(*config);
    return load;
}

} // namespace qrexec::services
