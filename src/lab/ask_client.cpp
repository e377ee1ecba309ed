// qrexec-lab ask: run by the policy engine through state/ask-command for an
// `ask` rule. Asks a waiting `qrexec-lab call` that has a terminal, else the
// lab's `ask` setting answers. Prints "allow:<target>" or "deny".
#include "io/fd.h"
#include "io/unix_address.h"
#include "lab/ask_protocol.h"
#include "lab/calllog.h"
#include "lab/cli.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

// The question: the policy.Ask payload as one JSON line on stdin (the asker may
// keep our stdin open), or as arguments SOURCE SERVICE ARGUMENT DEFAULT TARGET...
AskQuestion read_question(const Args& args) {
    auto q = ask_question_from_json(read_question_line(0, 65536, -1));
    if (q && !q->source.empty()) return *q;
    AskQuestion out;
    if (args.size() >= 2) {
        out.source = args[0];
        out.service = args[1];
        out.argument = args.size() > 2 ? args[2] : "";
        out.default_target = args.size() > 3 ? args[3] : "";
        out.targets.assign(args.begin() + static_cast<long>(std::min<size_t>(4, args.size())),
                           args.end());
    }
    return out;
}

bool waiter_matches(const AskWaiter& w, const AskQuestion& q) {
    std::string full = q.service + q.argument;
    return w.source == q.source &&
           (w.service == full || w.service + "+" == full || w.service == q.service);
}

// The waiter's answer, or "" if it could not be reached or said nothing usable.
std::string ask_waiter(const AskWaiter& waiter, AskQuestion question) {
    std::string intended = waiter.target;
    if (const char* req = std::getenv("QREXEC_ASK_REQUESTED_TARGET"); req && *req) intended = req;
    bool listed = std::find(question.targets.begin(), question.targets.end(), intended) !=
                  question.targets.end();
    question.proposed = listed ? intended : question.default_target;
    auto addr = io::UnixAddress::from_path(waiter.socket);
    if (!addr) return "";
    io::Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s || connect(s.get(), addr->get(), addr->size()) != 0) return "";
    io::write_all(s.get(), ask_question_to_json(question) + "\n");
    std::string reply = read_question_line(s.get(), 4096, -1);
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r'))
        reply.pop_back();
    return is_ask_answer(reply) ? reply : "";
}

} // namespace

int cmd_ask(const Context& ctx, const Args& args) {
    AskQuestion q = read_question(args);
    std::string answer, how;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(ctx.paths.ask_dir(), ec)) {
        if (entry.path().extension() != ".json") continue;
        auto waiter = ask_waiter_from_json(read_file(entry.path().string()).value_or(""));
        if (!waiter || !waiter_matches(*waiter, q)) continue;
        answer = ask_waiter(*waiter, q);
        if (!answer.empty()) {
            how = "the caller's terminal";
            break;
        }
    }
    if (answer.empty()) {
        auto text = read_file(ctx.paths.lab_json());
        auto state = text ? lab_state_from_json(*text, nullptr) : std::nullopt;
        bool allow = state && state->lab.ask == AskFallback::allow;
        how = fmt::format("lab setting ask = \"{}\" (no terminal)", allow ? "allow" : "deny");
        std::string pick = q.default_target;
        if (pick.empty() && q.targets.size() == 1) pick = q.targets.front();
        answer = allow && !pick.empty() ? "allow:" + pick : "deny";
    }
    nlohmann::json record{{"time", now_seconds()},  {"source", q.source}, {"service", q.service},
                          {"argument", q.argument}, {"answer", answer},   {"how", how}};
    append_line(ctx.paths.asks_log(), record.dump());
    fmt::print("{}\n", answer);
    return 0;
}

} // namespace qrexec::lab
