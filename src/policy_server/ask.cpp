#include "policy_server/ask.h"

#include "io/log.h"

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace qrexec::policy {

namespace {

std::string join(const std::vector<std::string>& items, char sep) {
    std::string out;
    for (const auto& s : items) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

// Starts the command with stdin = the request, stdout = a pipe we read.
io::Child start_command(const std::string& command, const AskState& state, const SystemInfo& system,
                        io::Fd& out_read) {
    auto in = io::make_pipe();
    auto out = io::make_pipe();
    std::string request = ask_request_json(state, system) + "\n";
    std::string targets = join(state.targets, ' ');
    io::Child child = io::spawn({in.first.get(), out.second.get(), -1}, [&]() -> int {
        ::setenv("QREXEC_ASK_SOURCE", state.source.c_str(), 1);
        ::setenv("QREXEC_ASK_SERVICE", state.service.c_str(), 1);
        ::setenv("QREXEC_ASK_ARGUMENT", state.argument.c_str(), 1);
        ::setenv("QREXEC_ASK_TARGETS", targets.c_str(), 1);
        ::setenv("QREXEC_ASK_DEFAULT_TARGET", state.default_target.c_str(), 1);
        ::setenv("QREXEC_ASK_REQUESTED_TARGET", state.requested_target.c_str(), 1);
        io::close_fds_from(3);
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        return 127;
    });
    in.first.reset();
    out.second.reset();
    // The request is small (well under a pipe buffer) unless the system is huge; a
    // command that does not read it just gets EPIPE, which we ignore.
    io::set_nonblocking(in.second.get());
    struct sigaction ign {
    }, old{};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, &old);
    ssize_t ignored = ::write(in.second.get(), request.data(), request.size());
    (void)ignored;
    ::sigaction(SIGPIPE, &old, nullptr);
    out_read = std::move(out.first);
    return child;
}

} // namespace

std::string ask_command_from_env() {
    const char* env = std::getenv("QREXEC_ASK_COMMAND");
    return env ? env : "";
}

std::string ask_request_json(const AskState& state, const SystemInfo& system) {
    nlohmann::json icons = nlohmann::json::object();
    for (const auto& t : state.targets) {
        std::string name = t.starts_with("@dispvm:") ? t.substr(8) : t;
        if (const Domain* d = system.find(name); d && d->icon) icons[t] = *d->icon;
    }
    nlohmann::json doc = {
        {"source", state.source},
        {"service", state.service},
        {"argument", state.argument},
        {"targets", state.targets},
        {"default_target", state.default_target},
        {"icons", icons},
    };
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::string> parse_ask_reply(std::string_view reply, const AskState& state) {
    while (!reply.empty() && (reply.back() == '\n' || reply.back() == '\r' || reply.back() == ' '))
        reply.remove_suffix(1);
    if (reply == "allow") {
        if (state.default_target.empty()) return std::nullopt;
        return state.default_target;
    }
    if (reply.starts_with("allow:") && reply.size() > 6) return std::string(reply.substr(6));
    return std::nullopt;
}

std::optional<std::string> run_ask_command(const std::string& command, const AskState& state,
                                           const SystemInfo& system,
                                           std::chrono::milliseconds timeout) {
    io::Fd out;
    io::Child child = start_command(command, state, system, out);
    std::string reply;
    auto deadline = io::Clock::now() + timeout;
    bool timed_out = false;
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - io::Clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        if (!io::wait_readable(out.get(), static_cast<int>(left.count()))) continue;
        char buf[1024];
        ssize_t n = ::read(out.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reply.append(buf, static_cast<size_t>(n));
        if (reply.size() > kMaxAskReply) {
            QLOG("ask command printed too much, denying");
            timed_out = true;
            break;
        }
    }
    if (timed_out) {
        ::kill(child.pid(), SIGKILL);
        child.wait();
        return std::nullopt;
    }
    if (child.wait() != 0) {
        QLOG("ask command failed (exit status {}), denying", *child.status());
        return std::nullopt;
    }
    return parse_ask_reply(reply, state);
}

AskProcess::AskProcess(io::EventLoop& loop, const std::string& command, const AskState& state,
                       const SystemInfo& system, Done done, std::chrono::milliseconds timeout)
    : loop_(loop), state_(state), done_(std::move(done)), timer_(loop) {
    child_ = start_command(command, state, system, out_);
    io::set_nonblocking(out_.get());
    out_watch_ = io::Watch(loop_, out_.get(), EPOLLIN, [this](uint32_t) { on_readable(); });
    timer_.start(timeout, [this] {
        QLOG("ask command timed out, denying");
        finish(std::nullopt);
    });
}

AskProcess::~AskProcess() {
    out_watch_.reset();
    exit_watch_.reset();
    if (child_.running()) {
        ::kill(child_.pid(), SIGKILL);
        child_.wait();
    }
}

void AskProcess::on_readable() {
    char buf[1024];
    for (;;) {
        ssize_t n = ::read(out_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n > 0) {
            reply_.append(buf, static_cast<size_t>(n));
            if (reply_.size() > kMaxAskReply) {
                QLOG("ask command printed too much, denying");
                finish(std::nullopt);
                return;
            }
            continue;
        }
        break; // EOF or error
    }
    out_watch_.reset();
    out_.reset();
    // The command closed its stdout; wait for its exit status without blocking.
    if (child_.exit_fd() >= 0 && !child_.try_wait()) {
        exit_watch_ = io::Watch(loop_, child_.exit_fd(), EPOLLIN, [this](uint32_t) { on_exit(); });
        return;
    }
    on_exit();
}

void AskProcess::on_exit() {
    auto status = child_.try_wait();
    if (!status) status = child_.wait(); // no pidfd: the command has closed stdout
    exit_watch_.reset();
    if (*status != 0) {
        QLOG("ask command failed (exit status {}), denying", *status);
        finish(std::nullopt);
        return;
    }
    finish(parse_ask_reply(reply_, state_));
}

void AskProcess::finish(std::optional<std::string> choice) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    // done_ may destroy this object: move it out first.
    Done done = std::move(done_);
    done(std::move(choice));
}

} // namespace qrexec::policy
