#include "lab/ask_protocol.h"

#include "io/fd.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>

namespace qrexec::lab {
using nlohmann::json;

namespace {

std::string string_field(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

} // namespace

std::optional<AskQuestion> ask_question_from_json(const std::string& text) {
    json q = json::parse(text, nullptr, false);
    if (q.is_discarded() || !q.is_object()) return std::nullopt;
    AskQuestion out;
    out.source = string_field(q, "source");
    out.service = string_field(q, "service");
    out.argument = string_field(q, "argument");
    out.default_target = string_field(q, "default_target");
    out.proposed = string_field(q, "proposed");
    if (auto it = q.find("targets"); it != q.end() && it->is_array())
        for (const auto& t : *it)
            if (t.is_string()) out.targets.push_back(t.get<std::string>());
    return out;
}

std::string ask_question_to_json(const AskQuestion& question) {
    json q{{"source", question.source},
           {"service", question.service},
           {"argument", question.argument},
           {"default_target", question.default_target},
           {"targets", question.targets}};
    if (!question.proposed.empty()) q["proposed"] = question.proposed;
    return q.dump();
}

std::optional<AskWaiter> ask_waiter_from_json(const std::string& text) {
    json r = json::parse(text, nullptr, false);
    if (r.is_discarded() || !r.is_object()) return std::nullopt;
    AskWaiter out;
    if (auto it = r.find("pid"); it != r.end() && it->is_number_integer())
        out.pid = it->get<pid_t>();
    out.source = string_field(r, "source");
    out.target = string_field(r, "target");
    out.service = string_field(r, "service");
    out.socket = string_field(r, "socket");
    return out;
}

std::string ask_waiter_to_json(const AskWaiter& waiter) {
    json r{{"pid", waiter.pid},
           {"source", waiter.source},
           {"target", waiter.target},
           {"service", waiter.service},
           {"socket", waiter.socket}};
    return r.dump();
}

std::string read_question_line(int fd, size_t limit, int timeout_ms) {
    std::string line;
    char buf[4096];
    while (line.size() < limit && line.find('\n') == std::string::npos) {
        if (timeout_ms >= 0 && !io::wait_readable(fd, timeout_ms)) break;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        line.append(buf, static_cast<size_t>(n));
    }
    return line;
}

bool is_ask_answer(const std::string& reply) {
    return reply == "deny" || reply.rfind("allow:", 0) == 0;
}

} // namespace qrexec::lab
