#include "daemon/async.h"

#include "io/log.h"
#include "io/process.h"
#include "io/unix_address.h"
#include "protocol/frame.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace qrexec::daemon {

namespace {
using io::kConnectRetryDelay;
using io::kMaxConnectTries;
using io::send_some;
constexpr size_t kAsyncReadChunk = 16384;
} // namespace

// ---- DaemonCall -------------------------------------------------------------

DaemonCall::DaemonCall(io::EventLoop& loop, std::string path, uint32_t type,
                       protocol::ExecParams params, const std::string& cmdline, Done done)
    : loop_(loop), path_(std::move(path)), type_(type), done_(std::move(done)), retry_(loop) {
    // Our HELLO and the request go out together; a daemon reads them in order
    // whether or not we have read its HELLO yet (P§4.2 allows either order).
    out_ = protocol::encode_frame(protocol::MSG_HELLO,
                                  protocol::encode_hello(protocol::kClientProtocolVersion));
    std::string body = cmdline;
    body.push_back('\0');
    auto request = protocol::encode_frame(
        type, protocol::encode_exec_params(params, protocol::as_bytes(body)));
    out_.insert(out_.end(), request.begin(), request.end());
    retry_.start(std::chrono::milliseconds(0), [this] { try_connect(); });
}

io::Fd DaemonCall::take_connection() {
    return std::move(fd_);
}

void DaemonCall::try_connect() {
    auto attempt = connect_unix(path_);
    if (attempt.error == EAGAIN && ++connect_tries_ < kMaxConnectTries) {
        retry_.start(kConnectRetryDelay, [this] { try_connect(); });
        return;
    }
    if (attempt.error) {
        Result result;
        result.outcome = attempt.error == ENOENT || attempt.error == ECONNREFUSED
                             ? Outcome::NotRunning
                             : Outcome::Failed;
        result.error = "cannot connect to " + path_ + ": " + io::errno_text(attempt.error);
        finish(std::move(result));
        return;
    }
    fd_ = std::move(attempt.fd);
    watch_ = Watch(loop_, fd_.get(), EPOLLIN | EPOLLOUT, [this](uint32_t ev) { on_events(ev); });
}

void DaemonCall::on_events(uint32_t events) {
    if (sent_ < out_.size()) {
        ssize_t n = send_some(fd_.get(), out_.data() + sent_, out_.size() - sent_);
        if (n < 0) {
            finish({Outcome::Failed, "write to " + path_ + ": " + io::errno_text(errno), {}});
            return;
        }
        sent_ += static_cast<size_t>(n);
        if (sent_ == out_.size()) watch_.modify(EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    std::byte buffer[256];
    ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        finish({Outcome::Failed, "read from " + path_ + ": " + io::errno_text(errno), {}});
        return;
    }
    if (n == 0) {
        finish({Outcome::Failed, "connection closed by " + path_ + " before its reply", {}});
        return;
    }
    in_.append(std::span<const std::byte>(buffer, static_cast<size_t>(n)));
    process_frames();
}

bool DaemonCall::process_frames() {
    for (;;) {
        Frame frame;
        auto status = in_.next(frame, [this](protocol::Header h) {
            if (!got_hello_) return protocol::is_hello_header(h);
            return h.type == type_ && h.len == protocol::kExecParamsSize;
        });
        if (status == FrameBuffer::Status::NeedMore) return false;
        if (status == FrameBuffer::Status::Rejected) {
            finish({Outcome::Failed,
                    std::string(got_hello_ ? "invalid reply" : "invalid HELLO") + " from " + path_,
                    {}});
            return true;
        }
        if (!got_hello_) {
            auto checked =
                protocol::check_hello(frame.header, frame.payload, protocol::kLocalSocketHello);
            if (!checked.version) {
                finish({Outcome::Failed, "incompatible protocol version from " + path_, {}});
                return true;
            }
            got_hello_ = true;
            continue;
        }
        auto params = protocol::decode_exec_params(frame.payload);
        Result result;
        result.outcome = Outcome::Reply;
        result.reply = params.value_or(protocol::ExecParams{});
        finish(std::move(result));
        return true;
    }
}

void DaemonCall::finish(Result result) {
    watch_.reset();
    retry_.cancel();
    if (result.outcome != Outcome::Reply) fd_.reset();
    auto done = std::move(done_);
    done(std::move(result)); // may destroy *this: nothing may follow
}

// ---- ProgramRun -------------------------------------------------------------

ProgramRun::ProgramRun(io::EventLoop& loop, Reaper& reaper, std::string path,
                       std::vector<std::string> argv, size_t max_output, Done done)
    : loop_(loop), reaper_(reaper), max_output_(max_output), done_(std::move(done)),
      start_failed_(loop) {
    try {
        auto pair = io::make_socketpair();
        int child_end = pair.second.get();
        // posix_spawn: no page-table copy of the daemon; an exec failure is
        // reported here (status 125, as the forked child used to exit with).
        child_ = io::spawn_exec({path, argv, std::nullopt, {child_end, child_end, -1}, false});
        out_ = std::move(pair.first);
        io::set_nonblocking(out_.get());
    } catch (const std::exception& e) {
        QLOG("cannot start {}: {}", path, e.what());
        start_failed_.start(std::chrono::milliseconds(0), [this] {
            auto done = std::move(done_);
            done(Result{125, false, {}});
        });
        return;
    }
    out_watch_ = Watch(loop_, out_.get(), EPOLLIN, [this](uint32_t) { on_output(); });
    if (child_.exit_fd() >= 0) {
        exit_watch_ = Watch(loop_, child_.exit_fd(), EPOLLIN, [this](uint32_t) { on_exit(); });
    } else {
        QLOG("no pidfd for {}", path);
    }
}

ProgramRun::~ProgramRun() {
    if (child_.running() && !child_.try_wait()) {
        exit_watch_.reset();
        reaper_.terminate(std::move(child_), "abandoned policy program");
    }
}

void ProgramRun::on_output() {
    char buffer[kAsyncReadChunk];
    ssize_t n = ::read(out_.get(), buffer, sizeof buffer);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
        output_.append(buffer, static_cast<size_t>(n));
        if (output_.size() <= max_output_) return;
        too_long_ = true;
        ::kill(child_.pid(), SIGKILL); // its answer is unusable anyway
    }
    eof_ = true;
    out_watch_.reset();
    out_.reset();
    maybe_finish();
}

void ProgramRun::on_exit() {
    if (!child_.try_wait()) return;
    exit_watch_.reset();
    maybe_finish();
}

void ProgramRun::maybe_finish() {
    if (!eof_ || !child_.status()) return;
    Result result{*child_.status(), too_long_, std::move(output_)};
    auto done = std::move(done_);
    done(std::move(result)); // may destroy *this: nothing may follow
}

} // namespace qrexec::daemon
