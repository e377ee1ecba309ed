// The lab's private ask protocol. The policy engine runs `qrexec-lab ask` for an
// `ask` rule (ask_client.cpp); it forwards the question to a `qrexec-lab call`
// waiting with a terminal (ask_server.cpp), found through the waiter records in
// the state dir's ask/ folder. Every message is one JSON line, parsed here once.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

// The policy.Ask payload, plus the target the caller asked for ("proposed").
struct AskQuestion {
    std::string source, service, argument, default_target, proposed;
    std::vector<std::string> targets;
};
// Missing fields stay empty; not a JSON object -> nullopt.
std::optional<AskQuestion> ask_question_from_json(const std::string& text);
std::string ask_question_to_json(const AskQuestion& question);

// What a waiting call leaves in ask/<pid>.json.
struct AskWaiter {
    pid_t pid = 0;
    std::string source, target, service, socket;
};
std::optional<AskWaiter> ask_waiter_from_json(const std::string& text);
std::string ask_waiter_to_json(const AskWaiter& waiter);

// Reads up to the first newline (at most `limit` bytes), waiting at most
// timeout_ms per read (-1: no limit).
std::string read_question_line(int fd, size_t limit, int timeout_ms);

// "allow:<target>" or "deny".
bool is_ask_answer(const std::string& reply);

} // namespace qrexec::lab
