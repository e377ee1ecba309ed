// io::spawn_exec: posix_spawn'ed children get the same clean start as spawn().
#include "io/fd.h"
#include "io/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <string>
#include <system_error>

using namespace qrexec::io;

namespace {

std::string read_all_text(int fd) {
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        text.append(buf, static_cast<size_t>(n));
    return text;
}

// Runs spec with stdout captured; returns {status, stdout}.
std::pair<int, std::string> run_captured(ExecSpec spec) {
    auto out = make_pipe();
    spec.stdio.out = out.second.get();
    auto child = spawn_exec(spec);
    out.second.reset();
    std::string text = read_all_text(out.first.get());
    return {child.wait(), text};
}

// The hex mask of a /proc/self/status line such as "SigIgn:".
unsigned long long status_mask(const std::string& status, const std::string& key) {
    auto pos = status.find(key);
    if (pos == std::string::npos) return ~0ULL;
    return std::stoull(status.substr(pos + key.size()), nullptr, 16);
}

} // namespace

TEST(SpawnExec, InstallsStdioAndReportsTheExitStatus) {
    auto [status, text] =
        run_captured({"/bin/sh", {"sh", "-c", "echo out; exit 3"}, std::nullopt, {}, false});
    EXPECT_EQ(status, 3);
    EXPECT_EQ(text, "out\n");
}

TEST(SpawnExec, ChildGetsDefaultDispositionsAndAnEmptyMask) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    auto old = signal(SIGUSR2, SIG_IGN);
    auto [status, text] =
        run_captured({"/bin/cat", {"cat", "/proc/self/status"}, std::nullopt, {}, false});
    signal(SIGUSR2, old);
    sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    ASSERT_EQ(status, 0);
    auto bit = [](int sig) { return 1ULL << (sig - 1); };
    EXPECT_EQ(status_mask(text, "SigBlk:") & bit(SIGUSR1), 0u) << text;
    EXPECT_EQ(status_mask(text, "SigIgn:") & bit(SIGUSR2), 0u) << text;
}

TEST(SpawnExec, ClosesEveryOtherFdEvenWithoutCloexec) {
    auto pipe = make_pipe();
    int leaked = fcntl(pipe.first.get(), F_DUPFD, 50); // no FD_CLOEXEC
    ASSERT_GE(leaked, 50);
    Fd guard(leaked);
    auto [status, text] =
        run_captured({"/bin/sh",
                      {"sh", "-c", "test -e /proc/self/fd/" + std::to_string(leaked)},
                      std::nullopt,
                      {},
                      false});
    EXPECT_EQ(status, 1);
}

TEST(SpawnExec, PassesTheGivenEnvironmentOnly) {
    auto [status, text] =
        run_captured({"/usr/bin/env", {"env"}, std::vector<std::string>{"ONLY=this"}, {}, false});
    EXPECT_EQ(status, 0);
    EXPECT_EQ(text, "ONLY=this\n");
}

TEST(SpawnExec, NewSessionMakesTheChildASessionLeader) {
    auto [status, text] =
        run_captured({"/bin/cat", {"cat", "/proc/self/stat"}, std::nullopt, {}, true});
    ASSERT_EQ(status, 0);
    // pid (comm) state ppid pgrp session ...
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string state, ppid, pgrp, session;
    fields >> state >> ppid >> pgrp >> session;
    std::string pid = text.substr(0, text.find(' '));
    EXPECT_EQ(session, pid) << text;
}

TEST(SpawnExec, StdioSourcesInsideZeroToTwoAreNotClobbered) {
    // The child's stdout comes from our fd 0: installing it must not depend on
    // the order of the dup2 calls.
    auto out = make_pipe();
    int saved_stdin = dup(0);
    ASSERT_GE(saved_stdin, 0);
    ASSERT_EQ(dup2(out.second.get(), 0), 0); // the pipe's write end is now fd 0
    ExecSpec spec{"/bin/sh", {"sh", "-c", "echo swapped"}, std::nullopt, {-1, 0, -1}, false};
    auto child = spawn_exec(spec);
    dup2(saved_stdin, 0);
    close(saved_stdin);
    out.second.reset();
    EXPECT_EQ(read_all_text(out.first.get()), "swapped\n");
    EXPECT_EQ(child.wait(), 0);
}

TEST(SpawnExec, ExecFailureThrowsWithTheErrno) {
    try {
        spawn_exec({"/nonexistent/program", {"x"}, std::nullopt, {}, false});
        FAIL() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
    }
}
