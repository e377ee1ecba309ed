#include "agent/signal_routes.h"

#include "io/fd.h"
#include "io/process.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

using qrexec::agent::parent_pid;
using qrexec::agent::ServiceSignalRoutes;

namespace fixtures {

// A fake /proc with one <pid>/stat line.
struct FakeProc {
    std::filesystem::path root =
        std::filesystem::temp_directory_path() / ("routes-test-" + std::to_string(::getpid()));
    FakeProc() { std::filesystem::create_directories(root); }
    ~FakeProc() { std::filesystem::remove_all(root); }
    void add(pid_t pid, const std::string& stat) {
        std::filesystem::create_directories(root / std::to_string(pid));
        std::ofstream(root / std::to_string(pid) / "stat") << stat << "\n";
    }
};

// A child that waits for its stdin to close; its own parent is this test.
struct Sleeper {
    qrexec::io::FdPair pipe = qrexec::io::make_pipe();
    qrexec::io::Child child;
    Sleeper() {
        qrexec::io::ExecSpec spec;
        spec.path = "/bin/sh";
        spec.argv = {"sh", "-c", "read x"};
        spec.stdio.in = pipe.first.get();
        child = qrexec::io::spawn_exec(spec);
    }
    ~Sleeper() {
        pipe.second.reset();
        child.wait();
    }
};

uint64_t drain(int fd) {
    uint64_t count = 0;
    if (::read(fd, &count, sizeof count) != sizeof count) return 0;
    return count;
}

} // namespace fixtures

TEST(SignalRoutes, ParentPidParsesCommandNamesWithParentheses) {
    fixtures::FakeProc proc;
    proc.add(100, "100 (odd) R name) S 42 100 100 0 -1");
    proc.add(101, "101 (sh) S 7 101 101 0 -1");
    proc.add(102, "garbage");
    EXPECT_EQ(parent_pid(100, proc.root.string()), 42);
    EXPECT_EQ(parent_pid(101, proc.root.string()), 7);
    EXPECT_EQ(parent_pid(102, proc.root.string()), std::nullopt);
    EXPECT_EQ(parent_pid(103, proc.root.string()), std::nullopt); // gone
    EXPECT_EQ(parent_pid(::getpid()), ::getppid());
}

TEST(SignalRoutes, SenderIsTheServiceOrItsDescendant) {
    fixtures::FakeProc proc;
    // 300 -> 200 (service of call A); 301 -> 300 -> 200; 400 -> 1 (no call).
    proc.add(300, "300 (kill) R 200 1 1 0 -1");
    proc.add(301, "301 (kill) R 300 1 1 0 -1");
    proc.add(400, "400 (kill) R 1 1 1 0 -1");
    ServiceSignalRoutes routes;
    qrexec::io::Fd a(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    qrexec::io::Fd b(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    struct FakeChild {
        pid_t p;
        pid_t pid() const { return p; }
    };
    routes.spawn_and_add(a.get(), [] { return FakeChild{200}; });
    routes.spawn_and_add(b.get(), [] { return FakeChild{250}; });
    EXPECT_EQ(routes.find(200, proc.root.string()), a.get());
    EXPECT_EQ(routes.find(250, proc.root.string()), b.get());
    EXPECT_EQ(routes.find(301, proc.root.string()), a.get());
    EXPECT_EQ(routes.find(400, proc.root.string()), -1);
    EXPECT_EQ(routes.find(999, proc.root.string()), -1); // sender already gone
    routes.remove_event_fd(a.get());
    EXPECT_EQ(routes.find(200, proc.root.string()), -1);
    EXPECT_EQ(routes.find(250, proc.root.string()), b.get());
    EXPECT_EQ(routes.size(), 1u);
}

TEST(SignalRoutes, AncestorWalkIsBounded) {
    fixtures::FakeProc proc;
    // A chain 1000 <- 1001 <- ... deeper than the bound.
    int depth = ServiceSignalRoutes::kMaxAncestorLevels + 2;
    for (int i = 1; i <= depth; ++i)
        proc.add(1000 + i, fmt::format("{} (x) S {} 1 1 0 -1", 1000 + i, 999 + i));
    ServiceSignalRoutes routes;
    qrexec::io::Fd a(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    struct FakeChild {
        pid_t pid() const { return 1000; }
    };
    routes.spawn_and_add(a.get(), [] { return FakeChild{}; });
    EXPECT_EQ(routes.find(1000 + ServiceSignalRoutes::kMaxAncestorLevels, proc.root.string()),
              a.get());
    EXPECT_EQ(routes.find(1000 + depth, proc.root.string()), -1);
}

TEST(SignalRoutes, RouteWakesTheCallOfARealChild) {
    ServiceSignalRoutes routes;
    qrexec::io::Fd a(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    qrexec::io::Fd b(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    fixtures::Sleeper other;
    fixtures::Sleeper service;
    routes.spawn_and_add(b.get(), [&] { return qrexec::io::Child(); }); // pid -1: not added
    EXPECT_EQ(routes.size(), 0u);
    // Register the real child's pid without spawning again.
    struct Known {
        pid_t p;
        pid_t pid() const { return p; }
    };
    routes.spawn_and_add(a.get(), [&] { return Known{service.child.pid()}; });
    EXPECT_TRUE(routes.route(service.child.pid()));
    EXPECT_EQ(fixtures::drain(a.get()), 1u);
    EXPECT_EQ(fixtures::drain(b.get()), 0u);
    EXPECT_FALSE(routes.route(other.child.pid())); // a live process of no call
    EXPECT_FALSE(routes.route(::getpid()));        // the agent's own parent chain
    EXPECT_EQ(fixtures::drain(a.get()), 0u);
}
