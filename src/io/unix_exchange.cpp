#include "io/unix_exchange.h"

#include "io/unix_address.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace qrexec::io {

namespace {
constexpr size_t kReadChunk = 16384;
} // namespace

// ---- connect_unix -----------------------------------------------------------

ConnectAttempt connect_unix(const std::string& path) {
    ConnectAttempt attempt;
    auto addr = UnixAddress::from_path(path);
    if (!addr) {
        attempt.error = ENAMETOOLONG;
        return attempt;
    }
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        attempt.error = errno;
        return attempt;
    }
    if (::connect(fd.get(), addr->get(), addr->size()) != 0 && errno != EINPROGRESS) {
        attempt.error = errno;
        return attempt;
    }
    attempt.fd = std::move(fd);
    return attempt;
}

ssize_t send_some(int fd, const void* data, size_t size) {
    for (;;) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        return -1;
    }
}

// ---- UnixExchange -----------------------------------------------------------

UnixExchange::UnixExchange(EventLoop& loop, std::string path, std::string request,
                           bool shutdown_write, size_t max_reply, Done done)
    : loop_(loop), path_(std::move(path)), request_(std::move(request)),
      shutdown_write_(shutdown_write), max_reply_(max_reply), done_(std::move(done)), retry_(loop) {
    retry_.start(std::chrono::milliseconds(0), [this] { try_connect(); });
}

void UnixExchange::try_connect() {
    auto attempt = connect_unix(path_);
    if (attempt.error == EAGAIN && ++connect_tries_ < kMaxConnectTries) {
        retry_.start(kConnectRetryDelay, [this] { try_connect(); });
        return;
    }
    if (attempt.error) {
        finish(Outcome::ConnectFailed, attempt.error);
        return;
    }
    fd_ = std::move(attempt.fd);
    watch_ = Watch(loop_, fd_.get(), EPOLLIN | EPOLLOUT, [this](uint32_t ev) { on_events(ev); });
}

void UnixExchange::on_events(uint32_t events) {
    if (sent_ < request_.size()) {
        ssize_t n = send_some(fd_.get(), request_.data() + sent_, request_.size() - sent_);
        if (n < 0) {
            finish(Outcome::IoError, errno);
            return;
        }
        sent_ += static_cast<size_t>(n);
        if (sent_ == request_.size()) {
            if (shutdown_write_) ::shutdown(fd_.get(), SHUT_WR);
            watch_.modify(EPOLLIN);
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    // Never more than one byte past the bound: that byte says "too long".
    char buffer[kReadChunk];
    size_t room = max_reply_ - std::min(max_reply_, reply_.size()) + 1;
    ssize_t n = ::read(fd_.get(), buffer, std::min(sizeof buffer, room));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        finish(Outcome::IoError, errno);
        return;
    }
    if (n == 0) {
        finish(Outcome::Reply, 0);
        return;
    }
    reply_.append(buffer, static_cast<size_t>(n));
    if (reply_.size() > max_reply_) finish(Outcome::TooLong, 0);
}

void UnixExchange::finish(Outcome outcome, int error) {
    watch_.reset();
    fd_.reset();
    retry_.cancel();
    Result result{outcome, error, std::move(reply_)};
    auto done = std::move(done_);
    done(std::move(result)); // may destroy *this: nothing may follow
}

} // namespace qrexec::io
