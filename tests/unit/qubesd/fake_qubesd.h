// A fake qubesd for the qubesd room's tests: a real UNIX socket in a temporary
// directory, served by a thread that answers each connection as the test says
// and records the exact request bytes.
#pragma once

#include "io/fd.h"
#include "io/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace qrexec::qubesd::fixtures {

struct FakeAnswer {
    enum class Kind {
        Reply, // write `bytes`, close
        Hold,  // never answer (the connection stays open until the fake ends)
    };
    Kind kind = Kind::Reply;
    std::string bytes;
};

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

inline FakeAnswer reply(std::string bytes) {
    return {FakeAnswer::Kind::Reply, std::move(bytes)};
}

class FakeQubesd {
  public:
    using Handler = std::function<FakeAnswer(const std::string& request)>;

    // gone_mid_reply: read only the first byte of each request before answering
    // and closing, so that the kernel resets the connection (unread data): qubesd
    // dying while it writes its reply.
    explicit FakeQubesd(Handler handler, bool gone_mid_reply = false)
        : handler_(std::move(handler)), gone_mid_reply_(gone_mid_reply) {
        char pattern[] = "/tmp/qrexec-qubesd-unit-XXXXXX";
        EXPECT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        path_ = dir_ + "/qubesd.sock";
        listener_ = io::listen_unix(path_, {.backlog = 16, .nonblocking = false, .bind_umask = std::nullopt});
        EXPECT_TRUE(listener_.valid());
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        stop_read_ = io::Fd(fds[0]);
        stop_write_ = io::Fd(fds[1]);
        thread_ = std::thread([this] { serve(); });
    }
    FakeQubesd(const FakeQubesd&) = delete;
    FakeQubesd& operator=(const FakeQubesd&) = delete;
    ~FakeQubesd() {
        (void)!::write(stop_write_.get(), "x", 1);
        thread_.join();
        held_.clear();
        listener_.reset();
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }

    const std::string& path() const { return path_; }
    std::vector<std::string> requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }

  private:
    void serve() {
        for (;;) {
            pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) continue;
            if (fds[1].revents) return;
            io::Fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!conn) continue;
            answer(std::move(conn));
        }
    }

    void answer(io::Fd conn) {
        std::string request;
        char buffer[4096];
        if (gone_mid_reply_) {
            // Wait for the whole request (one send) but take only its first byte.
            pollfd pfd{conn.get(), POLLIN, 0};
            ::poll(&pfd, 1, -1);
            if (::read(conn.get(), buffer, 1) == 1) request.assign(buffer, 1);
        } else {
            ssize_t n;
            while ((n = ::read(conn.get(), buffer, sizeof buffer)) > 0)
                request.append(buffer, static_cast<size_t>(n));
        }
        FakeAnswer answer = next_answer(request);
        if (answer.kind == FakeAnswer::Kind::Hold) {
            held_.push_back(std::move(conn));
            return;
        }
        io::write_all(conn.get(), answer.bytes);
    }

    FakeAnswer next_answer(const std::string& request) {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
        return handler_(request);
    }

    Handler handler_;
    bool gone_mid_reply_;
    std::string dir_;
    std::string path_;
    io::Fd listener_;
    io::Fd stop_read_;
    io::Fd stop_write_;
    std::mutex mutex_;
    std::vector<std::string> requests_;
    std::vector<io::Fd> held_;
    std::thread thread_;
};

} // namespace qrexec::qubesd::fixtures
