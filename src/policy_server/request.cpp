#include "policy_server/request.h"

#include <algorithm>

namespace qrexec::policy {

namespace {

enum Key : unsigned {
    kSource = 1,
    kIntendedTarget = 2,
    kServiceAndArg = 4,
    kRequestedSource = 8,
    kAssumeYes = 16,
    kJustEvaluate = 32,
};

bool eval_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '@' ||
           c == '_' || c == '.' || c == '-';
}

} // namespace

SocketRequestParser::State SocketRequestParser::invalid(std::string why) {
    error_ = std::move(why);
    return state_ = State::Invalid;
}

SocketRequestParser::State SocketRequestParser::complete() {
    const unsigned required = kSource | kIntendedTarget | kServiceAndArg;
    if ((seen_ & required) != required) {
        std::string missing;
        if (!(seen_ & kSource)) missing += " source";
        if (!(seen_ & kIntendedTarget)) missing += " intended_target";
        if (!(seen_ & kServiceAndArg)) missing += " service_and_arg";
        return invalid("missing required key(s):" + missing);
    }
    return state_ = State::Complete;
}

SocketRequestParser::State SocketRequestParser::line(std::string_view text) {
    if (text.empty()) return complete();
    auto eq = text.find('=');
    if (eq == std::string_view::npos) return invalid("line without '='");
    std::string_view key = text.substr(0, eq);
    std::string value(text.substr(eq + 1));
    struct Field {
        std::string_view name;
        Key bit;
    };
    static constexpr Field fields[] = {
        {"source", kSource},
        {"intended_target", kIntendedTarget},
        {"service_and_arg", kServiceAndArg},
        {"requested_source", kRequestedSource},
        {"assume_yes_for_ask", kAssumeYes},
        {"just_evaluate", kJustEvaluate},
    };
    auto it = std::find_if(std::begin(fields), std::end(fields),
                           [&](const Field& f) { return f.name == key; });
    if (it == std::end(fields)) return invalid("unknown key '" + std::string(key) + "'");
    if (seen_ & it->bit) return invalid("duplicate key '" + std::string(key) + "'");
    seen_ |= it->bit;
    switch (it->bit) {
    case kSource:
        request_.source = std::move(value);
        break;
    case kIntendedTarget:
        request_.intended_target = std::move(value);
        break;
    case kServiceAndArg:
        request_.service_and_arg = std::move(value);
        break;
    case kRequestedSource:
        request_.requested_source = std::move(value);
        break;
    case kAssumeYes:
    case kJustEvaluate: {
        if (value != "yes" && value != "no")
            return invalid("bad boolean for '" + std::string(key) + "': must be yes or no");
        (it->bit == kAssumeYes ? request_.assume_yes_for_ask : request_.just_evaluate) =
            value == "yes";
        break;
    }
    }
    return state_;
}

SocketRequestParser::State SocketRequestParser::feed(std::string_view data) {
    if (state_ != State::NeedMore) return state_;
    total_ += data.size();
    if (total_ > kMaxSocketRequest) return invalid("request too long");
    for (char c : data)
        if (static_cast<unsigned char>(c) > 0x7f) return invalid("non-ASCII data");
    buffer_.append(data);
    size_t start = 0;
    for (;;) {
        auto nl = buffer_.find('\n', start);
        if (nl == std::string::npos) break;
        line(std::string_view(buffer_).substr(start, nl - start));
        start = nl + 1;
        if (state_ != State::NeedMore) break;
    }
    buffer_.erase(0, start);
    return state_;
}

SocketRequestParser::State SocketRequestParser::finish() {
    if (state_ != State::NeedMore) return state_;
    if (!buffer_.empty()) {
        std::string last = std::move(buffer_);
        buffer_.clear();
        line(last);
        if (state_ != State::NeedMore) return state_;
    }
    return complete();
}

std::optional<Request> parse_socket_request(std::string_view data, std::string* error) {
    SocketRequestParser parser;
    auto state = parser.feed(data);
    if (state == SocketRequestParser::State::NeedMore) state = parser.finish();
    if (state != SocketRequestParser::State::Complete) {
        if (error) *error = parser.error();
        return std::nullopt;
    }
    return parser.request();
}

std::optional<EvalRequest> parse_eval_request(std::string_view data, std::string_view service_name,
                                              std::string* error) {
    auto fail = [&](std::string why) -> std::optional<EvalRequest> {
        if (error) *error = std::move(why);
        return std::nullopt;
    };
    auto nul = data.find('\0');
    if (nul == std::string_view::npos) return fail("no service header");
    if (nul > kMaxEvalHeader) return fail("service header too long");
    std::string_view header = data.substr(0, nul);
    std::string_view body = data.substr(nul + 1);
    if (body.size() > kMaxEvalBody) body = body.substr(0, kMaxEvalBody);
    for (char c : header)
        if (static_cast<unsigned char>(c) > 0x7f) return fail("non-ASCII service header");

    auto space = header.find(' ');
    if (space == std::string_view::npos) return fail("service header without caller");
    std::string_view descriptor = header.substr(0, space);
    std::string_view rest = header.substr(space + 1);
    std::string_view caller = rest.substr(0, rest.find(' '));
    std::string prefix = std::string(service_name) + "+";
    if (!descriptor.starts_with(prefix))
        return fail("unexpected service " + std::string(descriptor));
    std::string_view queried = descriptor.substr(prefix.size());
    if (queried.empty()) return fail("missing service argument");
    if (queried[0] == '+') return fail("service argument must not start with '+'");
    if (caller.empty()) return fail("empty caller");

    auto sep = body.find('\0');
    if (sep == std::string_view::npos) return fail("body is not source\\0target");
    std::string_view source = body.substr(0, sep);
    std::string_view target = body.substr(sep + 1);
    if (source.empty() || source.size() > 31) return fail("bad source length");
    if (target.empty() || target.size() > 63) return fail("bad target length");
    if (!std::all_of(source.begin(), source.end(), eval_name_char) ||
        !std::all_of(target.begin(), target.end(), eval_name_char))
        return fail("invalid character in source or target");
    return EvalRequest{std::string(queried), std::string(caller), std::string(source),
                       std::string(target)};
}

} // namespace qrexec::policy
