// Issue 11 weak point 5: a condemned child (timed-out policy program) is
// killed even when stopped or ignoring SIGTERM, and reaped; no fd stays open.
#include "daemon/async.h"

#include "io/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

using namespace qrexec;
using namespace std::chrono_literals;

namespace {

size_t open_fds() {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

// Runs the loop until the reaper is empty or ~30 s passed.
bool run_until_empty(io::EventLoop& loop, daemon::Reaper& reaper) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (reaper.size() && std::chrono::steady_clock::now() < deadline)
        loop.run_once(100ms);
    return reaper.size() == 0;
}

bool is_zombie_or_gone(pid_t pid) {
    // Reaped: waitpid says no such child.
    return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

io::Child stopped_child(bool ignore_term) {
    auto child = io::spawn({}, [ignore_term]() -> int {
        if (ignore_term) ::signal(SIGTERM, SIG_IGN);
        ::raise(SIGSTOP);
        for (;;)
            ::pause();
    });
    // Wait until it is actually stopped (a real "stopped policy program").
    int status = 0;
    EXPECT_EQ(::waitpid(child.pid(), &status, WUNTRACED), child.pid());
    EXPECT_TRUE(WIFSTOPPED(status));
    return child;
}

} // namespace

TEST(Reaper, TerminateKillsAStoppedChildAndReapsIt) {
    io::EventLoop loop;
    size_t fds_before = open_fds();
    {
        daemon::Reaper reaper(loop, 60s); // SIGTERM+SIGCONT alone must do it
        auto child = stopped_child(false);
        pid_t pid = child.pid();
        reaper.terminate(std::move(child), "stopped test program");
        ASSERT_TRUE(run_until_empty(loop, reaper));
        EXPECT_TRUE(is_zombie_or_gone(pid));
    }
    EXPECT_EQ(open_fds(), fds_before);
}

TEST(Reaper, TerminateEscalatesToSigkillAfterTheGracePeriod) {
    io::EventLoop loop;
    size_t fds_before = open_fds();
    {
        daemon::Reaper reaper(loop, 200ms);
        auto child = stopped_child(true);
        pid_t pid = child.pid();
        reaper.terminate(std::move(child), "stubborn test program");
        ASSERT_TRUE(run_until_empty(loop, reaper));
        EXPECT_TRUE(is_zombie_or_gone(pid));
    }
    EXPECT_EQ(open_fds(), fds_before);
}

TEST(Reaper, DestroyingTheReaperKillsCondemnedChildren) {
    io::EventLoop loop;
    pid_t pid = -1;
    {
        daemon::Reaper reaper(loop, 60s);
        auto child = stopped_child(true);
        pid = child.pid();
        reaper.terminate(std::move(child), "stubborn test program");
    }
    EXPECT_TRUE(is_zombie_or_gone(pid));
}
