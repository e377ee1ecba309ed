#include "services/lookup.h"

#include "test_util.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <gtest/gtest.h>

using namespace qrexec::services;
using namespace qrexec::services::fixtures;
using qrexec::services::fixtures::TempDir;
namespace services = qrexec::services;

namespace {} // namespace

TEST(Lookup, SplitPathList) {
    EXPECT_EQ(split_path_list("/a:/b"), (std::vector<std::string>{"/a", "/b"}));
    EXPECT_EQ(split_path_list("/a::/b:"), (std::vector<std::string>{"/a", "/b"}));
    EXPECT_TRUE(split_path_list("").empty());
}

TEST(Lookup, FromEnvironment) {
    setenv("QREXEC_SERVICE_PATH", "/x:/y", 1);
    unsetenv("QUBES_RPC_CONFIG_PATH");
    auto paths = SearchPaths::from_environment();
    EXPECT_EQ(paths.service_dirs, (std::vector<std::string>{"/x", "/y"}));
    EXPECT_EQ(paths.config_dirs.size(), 3u);
    EXPECT_EQ(paths.config_dirs[0], "/run/qubes/rpc-config");
    unsetenv("QREXEC_SERVICE_PATH");
    EXPECT_EQ(
        SearchPaths::from_environment().service_dirs,
        (std::vector<std::string>{"/run/qubes-rpc", "/usr/local/etc/qubes-rpc", "/etc/qubes-rpc"}));
}

TEST(Lookup, FindsFirstDirectory) {
    TempDir t;
    auto a = t.mkdir("a"), b = t.mkdir("b");
    t.write("b/svc", "x");
    auto r = services::find({a, b}, "svc", LookupMode::Service);
    EXPECT_EQ(r.status, LookupStatus::Found);
    EXPECT_EQ(r.path, b + "/svc");
    t.write("a/svc", "y");
    EXPECT_EQ(services::find({a, b}, "svc", LookupMode::Service).path, a + "/svc");
    EXPECT_EQ(services::find({a, b}, "other", LookupMode::Service).status, LookupStatus::NotFound);
}

TEST(Lookup, MissingDirectoryIsAbsent) {
    TempDir t;
    EXPECT_EQ(services::find({t.sub("nope")}, "svc", LookupMode::Service).status,
              LookupStatus::NotFound);
}

TEST(Lookup, NotADirectoryIsError) {
    TempDir t;
    t.write("file", "x");
    auto r = services::find({t.sub("file")}, "svc", LookupMode::Service);
    EXPECT_EQ(r.status, LookupStatus::Error);
    EXPECT_EQ(r.error_number, ENOTDIR);
}

TEST(Lookup, DanglingSymlinkIsAbsentAndSearchContinues) {
    TempDir t;
    auto a = t.mkdir("a"), b = t.mkdir("b");
    t.symlink("/nonexistent/target", "a/svc");
    EXPECT_EQ(services::find({a}, "svc", LookupMode::Service).status, LookupStatus::NotFound);
    t.write("b/svc", "x");
    EXPECT_EQ(services::find({a, b}, "svc", LookupMode::Service).path, b + "/svc");
    EXPECT_EQ(services::find({a}, "svc", LookupMode::Config).status, LookupStatus::NotFound);
}

TEST(Lookup, SymlinkLoopIsError) {
    TempDir t;
    auto a = t.mkdir("a");
    t.symlink("loop", "a/loop");
    EXPECT_EQ(services::find({a}, "loop", LookupMode::Service).status, LookupStatus::Error);
    EXPECT_EQ(services::find({a}, "loop", LookupMode::Config).status, LookupStatus::Error);
}

TEST(Lookup, RelativeSymlinkFollowedPathIsLinkPath) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/.qubes.Foo", "#!/bin/sh\n", 0755);
    t.symlink(".qubes.Foo", "a/qubes.Foo");
    auto r = services::find({a}, "qubes.Foo", LookupMode::Service);
    ASSERT_EQ(r.status, LookupStatus::Found);
    EXPECT_EQ(r.path, a + "/qubes.Foo");
    EXPECT_TRUE(S_ISREG(r.st.st_mode));
    EXPECT_EQ(classify(r), ServiceKind::Executable);
}

TEST(Lookup, DevTcpSymlinks) {
    TempDir t;
    auto a = t.mkdir("a");
    t.symlink("/dev/tcp", "a/tcp1");
    t.symlink("/dev/tcp/127.0.0.1/80", "a/tcp2");
    t.symlink("/dev/tcp/", "a/tcp3");
    auto r1 = services::find({a}, "tcp1", LookupMode::Service);
    EXPECT_EQ(r1.status, LookupStatus::Found);
    EXPECT_TRUE(r1.is_tcp);
    EXPECT_EQ(r1.tcp_target, "/dev/tcp");
    EXPECT_EQ(classify(r1), ServiceKind::Tcp);
    auto r2 = services::find({a}, "tcp2", LookupMode::Service);
    EXPECT_TRUE(r2.is_tcp);
    EXPECT_EQ(r2.tcp_target, "/dev/tcp/127.0.0.1/80");
    EXPECT_EQ(services::find({a}, "tcp3", LookupMode::Service).status, LookupStatus::Error);
    // Config lookup simply follows the (dangling) link.
    EXPECT_EQ(services::find({a}, "tcp2", LookupMode::Config).status, LookupStatus::NotFound);
}

TEST(Lookup, NameMaxIsAbsentWithoutTouchingFs) {
    // The directory does not even need to be valid: the name is rejected first.
    TempDir t;
    t.write("file", "x");
    std::string name(256, 'a');
    EXPECT_EQ(services::find({t.sub("file")}, name, LookupMode::Service).status,
              LookupStatus::NotFound);
    std::string name255(255, 'a');
    EXPECT_EQ(services::find({t.sub("file")}, name255, LookupMode::Service).status,
              LookupStatus::Error);
}

TEST(Lookup, PathBufferLimit) {
    // dir + "/" + "svc" + NUL = 1024; short components so lstat itself says ENOENT.
    std::string dir = "/nonexistent-qrexec";
    while (dir.size() < 1024 - 5)
        dir += "/x";
    dir.resize(1024 - 5);
    if (dir.back() == '/') dir.back() = 'y';
    EXPECT_EQ(services::find({dir}, "svc", LookupMode::Service).status, LookupStatus::NotFound);
    EXPECT_EQ(services::find({dir}, "svc1", LookupMode::Service).status, LookupStatus::Error);
}

TEST(Lookup, ServiceSpecificBeforeGeneralAcrossDirs) {
    TempDir t;
    auto a = t.mkdir("a"), b = t.mkdir("b");
    t.write("a/svc", "", 0755);
    t.write("b/svc+arg", "", 0755);
    auto r = find_service({a, b}, service_call("svc+arg"));
    ASSERT_EQ(r.status, LookupStatus::Found);
    EXPECT_EQ(r.path, b + "/svc+arg");
    auto general = find_service({a, b}, service_call("svc+other"));
    EXPECT_EQ(general.path, a + "/svc");
}

TEST(Lookup, NoPlusLooksUpSvcPlusFirst) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/svc", "", 0755);
    t.write("a/svc+", "", 0755);
    EXPECT_EQ(find_service({a}, service_call("svc")).path, a + "/svc+");
}

TEST(Lookup, ErrorOnSpecificDoesNotFallBack) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/svc", "", 0755);
    t.symlink("svc+arg", "a/svc+arg"); // loop -> ELOOP
    EXPECT_EQ(find_service({a}, service_call("svc+arg")).status, LookupStatus::Error);
}

TEST(Lookup, LongArgumentFallsBackToGeneral) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/svc", "", 0755);
    auto r = find_service({a}, service_call("svc+" + std::string(300, 'x')));
    EXPECT_EQ(r.status, LookupStatus::Found);
    EXPECT_EQ(r.path, a + "/svc");
}

TEST(Lookup, Classification) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/plain", "", 0644);
    t.mkdir("a/dir");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string sock = a + "/sock";
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
    EXPECT_EQ(find_service({a}, service_call("sock")).kind, ServiceKind::Socket);
    EXPECT_EQ(find_service({a}, service_call("dir")).kind, ServiceKind::Other);
    // No x bit at all: not executable even for root.
    EXPECT_EQ(find_service({a}, service_call("plain")).kind, ServiceKind::Other);
    EXPECT_EQ(find_service({a}, service_call("missing")).status, LookupStatus::NotFound);
}
