#include "qubesd/client.h"

#include "fake_qubesd.h"

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

using namespace std::string_literals;
using namespace qrexec::qubesd;
using namespace qrexec::qubesd::fixtures;

TEST(QubesdCall, SuccessSendsTheExactRequest) {
    FakeQubesd qubesd([](const std::string&) { return reply("0\0disp42"s); });
    Reply r = call(qubesd.path(), "admin.vm.CreateDisposable", "dvm-tpl", "uuid");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.value, "disp42");
    EXPECT_EQ(qubesd.requests(),
              std::vector<std::string>{"admin.vm.CreateDisposable+ dom0 name dvm-tpl\0uuid"s});
}

TEST(QubesdCall, ExceptionReply) {
    FakeQubesd qubesd(
        [](const std::string&) { return reply("2\0QubesNoSuchVMError\0no such VM\0"s); });
    Reply r = call(qubesd.path(), "admin.vm.Start", "work");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.exception_type, "QubesNoSuchVMError");
    EXPECT_TRUE(contains(r.error, "admin.vm.Start failed: QubesNoSuchVMError")) << r.error;
}

TEST(QubesdCall, ExceptionTypeIsEscapedForTheLog) {
    FakeQubesd qubesd([](const std::string&) { return reply("2\0Evil\nline\x1b[0m\0"s); });
    Reply r = call(qubesd.path(), "admin.vm.Start", "work");
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(contains(r.error, "\n"));
    EXPECT_FALSE(contains(r.error, "\x1b"));
}

TEST(QubesdCall, ReplyAtTheBoundIsRead) {
    std::string value(kMaxReply - 2, 'v');
    FakeQubesd qubesd([&](const std::string&) { return reply("0\0"s + value); });
    Reply r = call(qubesd.path(), "admin.vm.List", "dom0");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.value.size(), value.size());
}

TEST(QubesdCall, OversizedReplyIsAnError) {
    std::string value(kMaxReply - 1, 'v'); // one byte over the bound
    FakeQubesd qubesd([&](const std::string&) { return reply("0\0"s + value); });
    Reply r = call(qubesd.path(), "admin.vm.List", "dom0");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.value.empty());
    EXPECT_TRUE(contains(r.error, "reply longer than 65535 bytes")) << r.error;
}

TEST(QubesdCall, MalformedReply) {
    for (std::string bytes : {"garbage"s, ""s, "0"s, "1\0x"s}) {
        FakeQubesd qubesd([&](const std::string&) { return reply(bytes); });
        Reply r = call(qubesd.path(), "admin.vm.Start", "work");
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(contains(r.error, "malformed reply")) << r.error;
    }
}

TEST(QubesdCall, GoneMidReplyIsAnError) {
    // A success reply cut short by a reset is not taken as the value.
    FakeQubesd qubesd([](const std::string&) { return reply("0\0disp"s); }, true);
    Reply r = call(qubesd.path(), "admin.vm.CreateDisposable", "dvm-tpl");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.value.empty());
    EXPECT_TRUE(contains(r.error, "via " + qubesd.path() + " failed")) << r.error;
}

TEST(QubesdCall, NoQubesd) {
    Reply r = call("/nonexistent/qubesd.sock", "admin.vm.Start", "work");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(contains(r.error, "admin.vm.Start work via /nonexistent/qubesd.sock failed"))
        << r.error;
}

TEST(QubesdCall, SilentQubesdTimesOut) {
    FakeQubesd qubesd([](const std::string&) { return FakeAnswer{FakeAnswer::Kind::Hold, ""}; });
    Reply r = call(qubesd.path(), "admin.vm.Start", "work", "", std::chrono::milliseconds(50));
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(contains(r.error, "no reply within 50 ms")) << r.error;
}

TEST(QubesdCall, BadNamesAreNeverSent) {
    FakeQubesd qubesd([](const std::string&) { return reply("0\0"s); });
    for (std::string name : {""s, std::string(32, 'a'), "a/b"s, "-work"s, "w\xc3\xb6rk"s,
                             "uuid:1111"s, "@dispvm"s, "wo\0rk"s}) {
        Reply r = call(qubesd.path(), "admin.vm.Start", name);
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(contains(r.error, "not calling admin.vm.Start on")) << r.error;
        EXPECT_FALSE(contains(r.error, "\xc3")) << "the name is escaped";
    }
    EXPECT_TRUE(qubesd.requests().empty());
}

TEST(QubesdCall, AsyncCallAnswersFromTheLoopOnly) {
    FakeQubesd qubesd([](const std::string&) { return reply("0\0"s); });
    qrexec::io::EventLoop loop;
    bool done = false;
    Reply result;
    Call bad(loop, qubesd.path(), "admin.vm.Kill", "a/b", "", [&](Reply r) {
        result = std::move(r);
        done = true;
    });
    EXPECT_FALSE(done); // not from the constructor
    ASSERT_TRUE(run_until(loop, done, std::chrono::seconds(30)));
    EXPECT_FALSE(result.ok);
}

TEST(QubesdSocket, FromEnvironment) {
    ::unsetenv("QREXEC_QUBESD_SOCKET");
    EXPECT_EQ(socket_path_from_env(), "/run/qubesd.sock");
    ::setenv("QREXEC_QUBESD_SOCKET", "/tmp/q.sock", 1);
    EXPECT_EQ(socket_path_from_env(), "/tmp/q.sock");
    ::unsetenv("QREXEC_QUBESD_SOCKET");
}
