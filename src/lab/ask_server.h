// The ask socket of one `qrexec-lab call`: the policy's ask helper connects here
// when an `ask` rule needs an answer for this call, and we prompt on our terminal.
#pragma once

#include "io/fd.h"
#include "lab/state.h"

#include <memory>
#include <string>

namespace qrexec::lab {

struct AskServer {
    io::Fd listener;
    std::string socket_path, record_path;
    std::string last_answer; // "allow:x"/"deny" given at the prompt
    AskServer() = default;
    AskServer(const AskServer&) = delete;
    AskServer& operator=(const AskServer&) = delete;
    ~AskServer();
};

// nullptr without a terminal (then the lab's ask setting decides).
std::unique_ptr<AskServer> open_ask_server(const StatePaths& paths, const std::string& source,
                                           const std::string& target, const std::string& service);

// One question per connection: a JSON line in, "allow:<target>" or "deny" out.
void answer_one_ask(AskServer& server);

} // namespace qrexec::lab
