#include "services/command.h"

namespace qrexec::services {
namespace {

constexpr std::string_view kRpcPrefix = "QUBESRPC";
constexpr std::string_view kNoguiPrefix = "nogui:";

std::optional<ParsedCommand> fail(std::string* error, std::string message) {
    if (error) *error = std::move(message);
    return std::nullopt;
}

// Parses "DESCRIPTOR SOURCE[ ...]" into command (AGENT.md §3 steps 5-8).
bool parse_service_part(std::string_view rest, ParsedCommand& command, std::string* error) {
    auto space = rest.find(' ');
    if (space == std::string_view::npos) {
        fail(error, "No source domain in the service call");
        return false;
    }
    std::string_view descriptor = rest.substr(0, space);
    if (descriptor.empty()) {
        fail(error, "Empty service descriptor");
        return false;
    }
    if (descriptor.size() > kMaxDescriptorLen) {
        fail(error, "Service descriptor too long");
        return false;
    }
    auto plus = descriptor.find('+');
    std::string_view service = descriptor.substr(0, plus);
    if (service.empty()) {
        fail(error, "Empty service name");
        return false;
    }
    if (service.size() > kMaxServiceNameLen) {
        fail(error, "Service name too long");
        return false;
    }
    std::string_view after = rest.substr(space + 1);
    std::string_view source = after.substr(0, after.find(' '));
    if (source.empty()) {
        fail(error, "Empty source domain");
        return false;
    }
    command.descriptor = std::string(descriptor);
    command.service_name = std::string(service);
    if (plus != std::string_view::npos) command.argument = std::string(descriptor.substr(plus + 1));
    command.lookup_descriptor = command.descriptor;
    if (plus == std::string_view::npos) command.lookup_descriptor += '+';
    command.source_domain = std::string(source);
    command.service_header = std::string(rest);
    return true;
}

} // namespace

std::optional<ParsedCommand> parse_command(std::string_view text, bool with_user,
                                           std::string* error) {
    ParsedCommand command;
    if (with_user) {
        auto colon = text.find(':');
        if (colon == std::string_view::npos) return fail(error, "No user name in the command");
        command.username = std::string(text.substr(0, colon));
        text.remove_prefix(colon + 1);
    }
    if (text.starts_with(kNoguiPrefix)) {
        command.nogui = true;
        text.remove_prefix(kNoguiPrefix.size());
    }
    command.command = std::string(text);
    if (!text.starts_with(kRpcPrefix)) return command; // legacy shell command
    text.remove_prefix(kRpcPrefix.size());
    if (text.empty() || text.front() != ' ')
        return fail(error, "QUBESRPC must be followed by a space");
    text.remove_prefix(1);
    command.is_service = true;
    if (!parse_service_part(text, command, error)) return std::nullopt;
    return command;
}

std::vector<std::string_view> split_service_tokens(std::string_view header) {
    std::vector<std::string_view> tokens;
    size_t pos = 0;
    while (pos < header.size()) {
        if (header[pos] == ' ') {
            ++pos;
            continue;
        }
        size_t end = header.find(' ', pos);
        if (end == std::string_view::npos) end = header.size();
        tokens.push_back(header.substr(pos, end - pos));
        pos = end;
    }
    return tokens;
}

bool has_valid_token_count(const ParsedCommand& command) {
    auto count = split_service_tokens(command.service_header).size();
    return count == 2 || count == 4;
}

std::optional<RequestedTarget> requested_target(const ParsedCommand& command) {
    auto tokens = split_service_tokens(command.service_header);
    if (tokens.size() != 4) return std::nullopt;
    return RequestedTarget{std::string(tokens[2]), std::string(tokens[3])};
}

} // namespace qrexec::services
