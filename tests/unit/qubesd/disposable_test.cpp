#include "qubesd/disposable.h"

#include "fake_qubesd.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

using namespace std::string_literals;
using namespace qrexec::qubesd;
using namespace qrexec::qubesd::fixtures;

namespace {

constexpr const char* kUuid = "uuid:0123abcd-4567-89ef-0123-456789abcdef";

// qubesd that creates `created`, answers Start with `start` and Kill with success.
FakeQubesd::Handler lifecycle(std::string created, std::string start = "0\0"s) {
    return [=](const std::string& request) {
        if (request.starts_with("admin.vm.CreateDisposable+")) return reply("0\0"s + created);
        if (request.starts_with("admin.vm.Start+")) return reply(start);
        return reply("0\0"s);
    };
}

std::string create(const std::string& tmpl, const std::string& payload = "") {
    return "admin.vm.CreateDisposable+ dom0 name " + tmpl + "\0"s + payload;
}
std::string start(const std::string& name) {
    return "admin.vm.Start+ dom0 name " + name + "\0"s;
}
std::string kill(const std::string& name) {
    return "admin.vm.Kill+ dom0 name " + name + "\0"s;
}

} // namespace

TEST(LaunchDisposable, CreatesAndStarts) {
    FakeQubesd qubesd(lifecycle("disp42"));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_TRUE(o.ok) << o.error;
    EXPECT_EQ(o.name, "disp42");
    EXPECT_EQ(qubesd.requests(), (std::vector{create("dvm-tpl"), start("disp42")}));
}

TEST(LaunchDisposable, UuidForm) {
    FakeQubesd qubesd(lifecycle(kUuid));
    Outcome o = launch_disposable(qubesd.path(), kUuid);
    EXPECT_TRUE(o.ok) << o.error;
    EXPECT_EQ(o.name, kUuid);
    EXPECT_EQ(qubesd.requests(), (std::vector{create(kUuid, "uuid"), start(kUuid)}));
}

TEST(LaunchDisposable, UuidFormNeedsAUuidBack) {
    FakeQubesd qubesd(lifecycle("disp42"));
    Outcome o = launch_disposable(qubesd.path(), kUuid);
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.error, "returned an invalid name 'disp42'")) << o.error;
    EXPECT_EQ(qubesd.requests(), std::vector{create(kUuid, "uuid")});
}

TEST(LaunchDisposable, NameFormNeedsANameBack) {
    FakeQubesd qubesd(lifecycle(kUuid));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(qubesd.requests(), std::vector{create("dvm-tpl")});
}

TEST(LaunchDisposable, BadReturnedNamesAreNeverUsed) {
    for (std::string bad : {""s, std::string(32, 'd'), "a/b"s, "-disp"s, "d\xc3\xadsp"s, ".."s,
                            "uuid:1111"s, "none"s}) {
        FakeQubesd qubesd(lifecycle(bad));
        Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
        EXPECT_FALSE(o.ok) << bad;
        EXPECT_TRUE(o.name.empty());
        EXPECT_TRUE(contains(o.error, "returned an invalid name")) << o.error;
        EXPECT_FALSE(contains(o.error, "\xc3")) << "the name is escaped";
        // No Start, and no Kill either: the name names nothing we may touch.
        EXPECT_EQ(qubesd.requests(), std::vector{create("dvm-tpl")}) << bad;
    }
}

TEST(LaunchDisposable, BadTemplateIsNeverSent) {
    FakeQubesd qubesd(lifecycle("disp42"));
    for (std::string bad : {""s, "a/b"s, "-tpl"s, "t\xc3\xa9mpl"s, std::string(32, 't')}) {
        Outcome o = launch_disposable(qubesd.path(), bad);
        EXPECT_FALSE(o.ok);
        EXPECT_TRUE(contains(o.error, "not calling admin.vm.CreateDisposable")) << o.error;
    }
    EXPECT_TRUE(qubesd.requests().empty());
}

TEST(LaunchDisposable, CreateException) {
    FakeQubesd qubesd(
        [](const std::string&) { return reply("2\0QubesNoSuchVMError\0no template\0"s); });
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.error, "admin.vm.CreateDisposable failed: QubesNoSuchVMError"))
        << o.error;
    EXPECT_EQ(qubesd.requests(), std::vector{create("dvm-tpl")});
}

TEST(LaunchDisposable, OversizedCreateReply) {
    FakeQubesd qubesd(lifecycle(std::string(kMaxReply, 'd')));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.error, "reply longer than")) << o.error;
    EXPECT_EQ(qubesd.requests(), std::vector{create("dvm-tpl")});
}

TEST(LaunchDisposable, QubesdGoneMidReply) {
    FakeQubesd qubesd(lifecycle("disp42"), true);
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(o.name.empty());
    EXPECT_EQ(qubesd.requests().size(), 1u); // no Start with a cut reply
}

TEST(LaunchDisposable, StartFailureKillsTheDisposable) {
    FakeQubesd qubesd(lifecycle("disp7", "2\0QubesException\0no memory\0"s));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(o.name.empty());
    EXPECT_TRUE(contains(o.error, "admin.vm.Start failed: QubesException")) << o.error;
    EXPECT_EQ(qubesd.requests(), (std::vector{create("dvm-tpl"), start("disp7"), kill("disp7")}));
}

TEST(LaunchDisposable, StartGarbageKillsTheDisposable) {
    FakeQubesd qubesd(lifecycle("disp7", "garbage"));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(qubesd.requests(), (std::vector{create("dvm-tpl"), start("disp7"), kill("disp7")}));
}

TEST(LaunchDisposable, NotHaltedCountsAsStarted) {
    FakeQubesd qubesd(lifecycle("disp7", "2\0QubesVMNotHaltedError\0\0"s));
    Outcome o = launch_disposable(qubesd.path(), "dvm-tpl");
    EXPECT_TRUE(o.ok) << o.error;
    EXPECT_EQ(o.name, "disp7");
}

TEST(DisposableLaunchAsync, AbandonedLaunchNamesItsDisposable) {
    FakeQubesd qubesd([](const std::string& request) {
        if (request.starts_with("admin.vm.CreateDisposable+")) return reply("0\0disp5"s);
        return FakeAnswer{FakeAnswer::Kind::Hold, ""};
    });
    qrexec::io::EventLoop loop;
    bool done = false;
    DisposableLaunch launch(loop, qubesd.path(), "dvm-tpl", [&](Outcome) { done = true; });
    EXPECT_FALSE(launch.abandoned_disposable());
    // Run until the Start request has reached the (silent) fake.
    for (int i = 0; i < 3000 && qubesd.requests().size() < 2; ++i)
        loop.run_once(std::chrono::milliseconds(10));
    ASSERT_EQ(qubesd.requests().size(), 2u);
    EXPECT_FALSE(done);
    EXPECT_EQ(launch.abandoned_disposable(), "disp5");
}

TEST(StartVm, StartsAndAcceptsAlreadyRunning) {
    FakeQubesd qubesd([](const std::string& request) {
        return reply(request == start("work") ? "0\0"s : "2\0QubesVMNotHaltedError\0"s);
    });
    EXPECT_TRUE(start_vm(qubesd.path(), "work").ok);
    EXPECT_TRUE(start_vm(qubesd.path(), "vault").ok);
    EXPECT_FALSE(start_vm(qubesd.path(), "a/b").ok);
    EXPECT_EQ(qubesd.requests(), (std::vector{start("work"), start("vault")}));
}

TEST(KillVm, ReportsFailure) {
    FakeQubesd qubesd([](const std::string&) { return reply("2\0QubesVMNotStartedError\0"s); });
    Outcome o = kill_vm(qubesd.path(), "disp3");
    EXPECT_FALSE(o.ok);
    EXPECT_TRUE(contains(o.error, "admin.vm.Kill failed: QubesVMNotStartedError")) << o.error;
    EXPECT_EQ(qubesd.requests(), std::vector{kill("disp3")});
}
