#include "lab/policy_tap.h"

#include "io/fd.h"
#include "io/unix_address.h"
#include "lab/calllog.h"
#include "lab/policy_view.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <sstream>

namespace qrexec::lab {
using nlohmann::json;

namespace {

constexpr size_t kMaxRequest = 65536;
constexpr size_t kMaxReply = 65536;
// An ask can wait for a person (the policy's own prompt timeout is 120 s).
constexpr int kReplyTimeoutMs = 150000;

std::map<std::string, std::string> key_values(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (eq != std::string::npos) out.emplace(line.substr(0, eq), line.substr(eq + 1));
    }
    return out;
}

} // namespace

// The latest ask answer recorded for a call from source/service since `since`.
std::string ask_answer_since(const StatePaths& paths, const std::string& source,
                             const std::string& service, double since) {
    auto text = read_file(paths.asks_log());
    if (!text) return "";
    std::string found;
    size_t pos = 0;
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        if (end == std::string::npos) end = text->size();
        json j = json::parse(text->substr(pos, end - pos), nullptr, false);
        pos = end + 1;
        if (j.is_discarded() || !j.is_object()) continue;
        if (j.value("time", 0.0) < since || j.value("source", "") != source) continue;
        std::string svc = j.value("service", "") + j.value("argument", "");
        if (svc != service && svc != service + "+") continue;
        found = j.value("answer", "") + " by " + j.value("how", "?");
    }
    return found;
}

void serve_policy_request(int conn, const LabState& state, const StatePaths& paths) {
    double started = now_seconds();
    std::string request;
    char buf[4096];
    // The request ends with an empty line.
    while (request.size() < kMaxRequest && request.find("\n\n") == std::string::npos) {
        if (!io::wait_readable(conn, 10000)) return;
        ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) return;
        request.append(buf, static_cast<size_t>(n));
    }
    io::Fd upstream(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    std::string path = paths.policy_socket();
    auto addr = io::UnixAddress::from_path(path);
    if (!addr || connect(upstream.get(), addr->get(), addr->size()) != 0) return;
    if (!io::write_all(upstream.get(), request)) return;
    std::string reply;
    while (reply.size() < kMaxReply && io::wait_readable(upstream.get(), kReplyTimeoutMs)) {
        ssize_t n = read(upstream.get(), buf, sizeof buf);
        if (n <= 0) break;
        reply.append(buf, static_cast<size_t>(n));
    }
    // The daemon first: the log is not in the call's path.
    io::write_all(conn, reply);
    shutdown(conn, SHUT_RDWR);

    auto req = key_values(request);
    auto ans = key_values(reply);
    CallRecord rec;
    rec.kind = "policy";
    rec.time = started;
    rec.source = req["source"];
    rec.target = req["intended_target"];
    rec.service = req["service_and_arg"];
    rec.via = "policy daemon";
    rec.decision = reply.empty() ? "?" : ans.count("result") ? ans["result"] : "?";
    // A relayed call (protocol 4): the policy decides for the requested source.
    std::string relay;
    if (auto it = req.find("requested_source"); it != req.end() && !it->second.empty()) {
        relay = rec.source;
        rec.source = it->second;
    }
    RuleVerdict v =
        deciding_rule(state.lab, paths.system_info(), rec.source, rec.target, rec.service);
    rec.decided_by = v.rule;
    if (v.outcome == "ask" && (rec.decision == "allow" || rec.decision == "deny")) {
        rec.decision = "ask:" + rec.decision;
        std::string how = ask_answer_since(paths, rec.source, rec.service, started);
        if (!how.empty()) rec.detail = "asked: " + how;
    }
    if (rec.decision == "allow" || rec.decision == "ask:allow") {
        if (ans.count("target") && ans["target"] != rec.target)
            rec.detail += (rec.detail.empty() ? "-> " : "; -> ") + ans["target"];
    } else if (reply.empty()) {
        rec.detail = "no answer from the policy daemon";
    }
    if (!relay.empty()) rec.detail += (rec.detail.empty() ? "" : "; ") + ("relayed by " + relay);
    append_line(paths.calls_log(), record_to_json(rec));
}

} // namespace qrexec::lab
