#include "qubesd/client.h"

#include "io/log.h"
#include "io/log_field.h"
#include "protocol/qubesd.h"
#include "qubesd/names.h"

#include <cstdlib>
#include <optional>
#include <utility>

namespace qrexec::qubesd {

std::string socket_path_from_env() {
    const char* env = std::getenv("QREXEC_QUBESD_SOCKET");
    return env && *env ? env : kDefaultSocket;
}

Call::Call(io::EventLoop& loop, std::string socket, std::string method, std::string dest,
           std::string payload, Done done, size_t max_reply)
    : socket_(std::move(socket)), method_(std::move(method)), dest_(std::move(dest)),
      max_reply_(max_reply), done_(std::move(done)), refused_(loop) {
    if (auto problem = vm_reference_problem(dest_)) {
        Reply reply;
        reply.error = "not calling " + method_ + " on '" + io::log_field(dest_) + "': " + *problem;
        refused_.start(std::chrono::milliseconds(0),
                       [this, reply = std::move(reply)]() mutable { finish(std::move(reply)); });
        return;
    }
    exchange_ = std::make_unique<io::UnixExchange>(
        loop, socket_, protocol::qubesd_request(method_, "", dest_, payload), true, max_reply,
        [this](io::UnixExchange::Result r) { on_exchange(std::move(r)); });
}

void Call::on_exchange(io::UnixExchange::Result result) {
    using Outcome = io::UnixExchange::Outcome;
    Reply reply;
    std::string via = "qubesd call " + method_ + " " + dest_ + " via " + socket_ + " failed: ";
    switch (result.outcome) {
    case Outcome::ConnectFailed:
    case Outcome::IoError:
        reply.error = via + io::errno_text(result.error);
        break;
    case Outcome::TooLong:
        reply.error = via + "reply longer than " + std::to_string(max_reply_) + " bytes";
        break;
    case Outcome::Reply: {
        auto parsed = protocol::parse_qubesd_reply(result.reply);
        if (parsed.ok) {
            reply.ok = true;
            reply.value = std::move(parsed.value);
        } else if (parsed.malformed) {
            reply.error = via + "malformed reply '" + io::log_field(result.reply, 64) + "'";
        } else {
            reply.exception_type = io::log_field(parsed.exception_type);
            reply.error = method_ + " failed: " + reply.exception_type + " (on " + dest_ + ")";
        }
        break;
    }
    }
    finish(std::move(reply));
}

void Call::finish(Reply reply) {
    exchange_.reset();
    auto done = std::move(done_);
    done(std::move(reply)); // may destroy *this: nothing may follow
}

bool run_until(io::EventLoop& loop, const bool& done, std::chrono::milliseconds timeout) {
    auto deadline = io::Clock::now() + timeout;
    while (!done) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - io::Clock::now());
        if (left.count() <= 0) return false;
        loop.run_once(left);
    }
    return true;
}

Reply call(const std::string& socket, const std::string& method, const std::string& dest,
           const std::string& payload, std::chrono::milliseconds timeout, size_t max_reply) {
    io::EventLoop loop;
    Reply reply;
    bool done = false;
    Call call(
        loop, socket, method, dest, payload,
        [&](Reply r) {
            reply = std::move(r);
            done = true;
        },
        max_reply);
    if (run_until(loop, done, timeout)) return reply;
    reply.error = "qubesd call " + method + " " + dest + " via " + socket + ": no reply within " +
                  std::to_string(timeout.count()) + " ms";
    return reply;
}

} // namespace qrexec::qubesd
