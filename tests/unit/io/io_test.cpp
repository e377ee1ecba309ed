#include "io/event_loop.h"
#include "io/fd.h"
#include "io/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

using namespace qrexec::io;

TEST(Fd, ClosesOnDestruction) {
    int raw;
    {
        auto pipe = make_pipe();
        raw = pipe.first.get();
        EXPECT_GE(fcntl(raw, F_GETFD), 0);
    }
    EXPECT_EQ(fcntl(raw, F_GETFD), -1);
}

TEST(Fd, MoveTransfersOwnership) {
    auto pipe = make_pipe();
    Fd moved = std::move(pipe.first);
    EXPECT_FALSE(pipe.first.valid());
    EXPECT_TRUE(moved.valid());
}

TEST(EventLoop, DispatchesReadableFd) {
    EventLoop loop;
    auto pipe = make_pipe();
    int calls = 0;
    loop.watch(pipe.first.get(), EPOLLIN, [&](uint32_t ev) {
        EXPECT_TRUE(ev & EPOLLIN);
        ++calls;
        char c;
        EXPECT_EQ(read(pipe.first.get(), &c, 1), 1);
    });
    ASSERT_EQ(write(pipe.second.get(), "x", 1), 1);
    loop.run_once(std::chrono::milliseconds(1000));
    EXPECT_EQ(calls, 1);
}

TEST(EventLoop, TimersFireInOrderAndCanBeCancelled) {
    EventLoop loop;
    std::vector<int> fired;
    loop.add_timer(std::chrono::milliseconds(2), [&] { fired.push_back(2); });
    auto cancelled = loop.add_timer(std::chrono::milliseconds(1), [&] { fired.push_back(99); });
    loop.add_timer(std::chrono::milliseconds(0), [&] { fired.push_back(0); });
    loop.cancel_timer(cancelled);
    while (fired.size() < 2)
        loop.run_once(std::chrono::milliseconds(100));
    EXPECT_EQ(fired, (std::vector<int>{0, 2}));
}

TEST(EventLoop, RegularFilesAreRefusedByEpoll) {
    EventLoop loop;
    Fd file(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file.valid());
    EXPECT_FALSE(loop.try_watch(file.get(), EPOLLIN, [](uint32_t) {}));
}

TEST(Process, ReportsExitStatusAndSignals) {
    auto exits = spawn({}, [] { return 42; });
    EXPECT_EQ(exits.wait(), 42);
    auto killed = spawn({}, [] {
        raise(SIGTERM);
        return 0;
    });
    EXPECT_EQ(killed.wait(), 128 + SIGTERM);
}

TEST(Process, ExitFdBecomesReadableWhenTheChildExits) {
    auto pipe = make_pipe();
    auto child = spawn({pipe.first.get(), -1, -1}, [] {
        char c;
        return read(0, &c, 1) == 1 ? 7 : 1;
    });
    ASSERT_GE(child.exit_fd(), 0);
    EXPECT_FALSE(wait_readable(child.exit_fd(), 0));
    EXPECT_FALSE(child.try_wait().has_value());
    ASSERT_EQ(write(pipe.second.get(), "x", 1), 1);
    EXPECT_TRUE(wait_readable(child.exit_fd(), 5000));
    EXPECT_EQ(child.try_wait(), 7);
}

TEST(Process, ChildGetsDefaultSignalsAndStdio) {
    auto out = make_pipe();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    auto child = spawn({-1, out.second.get(), -1}, [] {
        sigset_t current;
        sigprocmask(SIG_SETMASK, nullptr, &current);
        const char* answer = sigismember(&current, SIGUSR1) ? "blocked" : "clear";
        return write(1, answer, strlen(answer)) > 0 ? 0 : 1;
    });
    sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    out.second.reset();
    EXPECT_EQ(child.wait(), 0);
    char buf[16] = {};
    EXPECT_EQ(read(out.first.get(), buf, sizeof buf), 5);
    EXPECT_STREQ(buf, "clear");
}
