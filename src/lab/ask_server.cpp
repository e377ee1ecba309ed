#include "lab/ask_server.h"

#include "io/unix_address.h"
#include "lab/ask_protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace qrexec::lab {

AskServer::~AskServer() {
    if (!socket_path.empty()) unlink(socket_path.c_str());
    if (!record_path.empty()) unlink(record_path.c_str());
}

std::unique_ptr<AskServer> open_ask_server(const StatePaths& paths, const std::string& source,
                                           const std::string& target, const std::string& service) {
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) return nullptr;
    close(tty);
    auto server = std::make_unique<AskServer>();
    server->socket_path = fmt::format("{}/{}.sock", paths.ask_dir(), getpid());
    server->record_path = fmt::format("{}/{}.json", paths.ask_dir(), getpid());
    auto addr = io::UnixAddress::from_path(server->socket_path);
    if (!addr) return nullptr;
    server->listener.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    unlink(server->socket_path.c_str());
    if (bind(server->listener.get(), addr->get(), addr->size()) != 0 ||
        listen(server->listener.get(), 4) != 0)
        return nullptr;
    AskWaiter waiter{getpid(), source, target, service, server->socket_path};
    write_file_atomic(server->record_path, ask_waiter_to_json(waiter));
    return server;
}

namespace {

// The terminal's answer to QUESTION: "allow:<target>" or "deny".
std::string prompt_on_terminal(int tty, const AskQuestion& q) {
    const std::string& proposed = q.proposed.empty() ? q.default_target : q.proposed;
    std::string choices;
    for (const auto& t : q.targets)
        choices += (choices.empty() ? "" : ", ") + t;
    std::string prompt =
        fmt::format("\n[qrexec-lab] policy asks: allow {} to call {}{}?\n  targets: {}\n  answer "
                    "y (allow {}), n (deny) or a target name: ",
                    q.source.empty() ? "?" : q.source, q.service.empty() ? "?" : q.service,
                    q.argument, choices, proposed.empty() ? q.targets.front() : proposed);
    io::write_all(tty, prompt);
    std::string line;
    char c;
    while (read(tty, &c, 1) == 1 && c != '\n')
        line += c;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
        line.pop_back();
    std::string chosen;
    if (line == "y" || line == "Y" || line == "yes")
        chosen = proposed.empty() ? q.targets.front() : proposed;
    else if (std::find(q.targets.begin(), q.targets.end(), line) != q.targets.end())
        chosen = line;
    std::string reply = chosen.empty() ? "deny" : "allow:" + chosen;
    io::write_all(tty, fmt::format("[qrexec-lab] answer: {}\n", reply));
    return reply;
}

} // namespace

void answer_one_ask(AskServer& server) {
    io::Fd conn(accept4(server.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    auto question = ask_question_from_json(read_question_line(conn.get(), 65536, 5000));
    if (!question) return;
    io::Fd tty(open("/dev/tty", O_RDWR | O_CLOEXEC));
    std::string reply = "deny";
    if (tty && !question->targets.empty()) reply = prompt_on_terminal(tty.get(), *question);
    io::write_all(conn.get(), reply + "\n");
    server.last_answer = reply;
}

} // namespace qrexec::lab
