#include "services/prepare.h"

#include "test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

using namespace qrexec::services;
using namespace qrexec::services::fixtures;
using qrexec::services::fixtures::TempDir;

namespace {

// A listening UNIX socket at path; returns the listening fd.
int listen_unix(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        // bind through a short relative name from inside the directory
        std::string dir = path.substr(0, path.rfind('/'));
        std::string base = path.substr(path.rfind('/') + 1);
        char cwd[4096];
        EXPECT_TRUE(getcwd(cwd, sizeof cwd));
        EXPECT_EQ(chdir(dir.c_str()), 0);
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", base.c_str());
        EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(chdir(cwd), 0);
    } else {
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    }
    EXPECT_EQ(listen(fd, 4), 0);
    return fd;
}

std::string read_header(int listener) {
    int conn = accept(listener, nullptr, nullptr);
    std::string data;
    char c;
    while (read(conn, &c, 1) == 1) {
        data.push_back(c);
        if (c == '\0') break;
    }
    close(conn);
    return data;
}

// Temporary symlink dirs (/tmp/qrexec-*) that still point at `target`. Other
// processes (tests running beside this one) make and remove dirs of that name
// too, so only the ones that lead to our socket count.
size_t tmp_links_to(const std::string& target) {
    size_t n = 0;
    std::error_code ec;
    for (auto& dir : std::filesystem::directory_iterator("/tmp", ec)) {
        auto name = dir.path().filename().string();
        if (!name.starts_with("qrexec-") || name.starts_with("qrexec-svc-test")) continue;
        for (auto& entry : std::filesystem::directory_iterator(dir.path(), ec)) {
            std::error_code link_ec;
            auto points_to = std::filesystem::read_symlink(entry.path(), link_ec);
            if (!link_ec && points_to.string().starts_with(target)) ++n;
        }
    }
    return n;
}

} // namespace

TEST(Prepare, ShellCommand) {
    TempDir t;
    auto r =
        prepare_call(parsed_command("u:echo hi", true), SearchPaths{{t.path()}, {t.path()}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.call->kind, CallKind::ShellCommand);
}

TEST(Prepare, NotFoundIs127) {
    TempDir t;
    auto r = prepare_call(parsed_command("u:QUBESRPC svc+a src", true),
                          SearchPaths{{t.path()}, {t.path()}}, true);
    EXPECT_EQ(r.failure, 127);
    EXPECT_FALSE(r.call);
}

TEST(Prepare, LookupErrorIs125) {
    TempDir t;
    t.write("file", "");
    auto r = prepare_call(parsed_command("u:QUBESRPC svc src", true),
                          SearchPaths{{t.sub("file")}, {}}, true);
    EXPECT_EQ(r.failure, 125);
}

TEST(Prepare, NotExecutableIs125) {
    TempDir t;
    t.write("svc", "data", 0644);
    auto r =
        prepare_call(parsed_command("u:QUBESRPC svc src", true), SearchPaths{{t.path()}, {}}, true);
    EXPECT_EQ(r.failure, 125);
}

TEST(Prepare, Executable) {
    TempDir t;
    auto path = t.write("svc", "#!/bin/sh\n", 0755);
    auto r = prepare_call(parsed_command("u:QUBESRPC svc+x src", true), SearchPaths{{t.path()}, {}},
                          true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.call->kind, CallKind::Executable);
    EXPECT_EQ(r.call->path, path);
    EXPECT_FALSE(r.call->socket.valid());
}

TEST(Prepare, ConfigErrorIs125AndConfigLoaded) {
    TempDir t;
    auto svc = t.mkdir("svc"), conf = t.mkdir("conf");
    t.write("svc/s", "#!/bin/sh\n", 0755);
    t.write("conf/s", "wait-for-session = 2\n");
    SearchPaths paths{{svc}, {conf}};
    EXPECT_EQ(prepare_call(parsed_command("u:QUBESRPC s src", true), paths, true).failure, 125);
    // load_config=false ignores it (dom0 nogui:)
    EXPECT_TRUE(prepare_call(parsed_command("u:QUBESRPC s src", true), paths, false).ok());
    t.write("conf/s", "force-user = 'bob'\n");
    auto r = prepare_call(parsed_command("u:QUBESRPC s src", true), paths, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(effective_user(parsed_command("u:QUBESRPC s src", true), r.call->config), "bob");
    EXPECT_EQ(effective_user(parsed_command("u:QUBESRPC s src", true), RpcConfig{}), "u");
}

TEST(Prepare, SocketServiceGetsHeader) {
    TempDir t;
    int listener = listen_unix(t.sub("qubes.Svc+"));
    auto r = prepare_call(parsed_command("user:QUBESRPC qubes.Svc a", true),
                          SearchPaths{{t.path()}, {}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.call->kind, CallKind::Socket);
    EXPECT_TRUE(r.call->socket.valid());
    EXPECT_EQ(read_header(listener), std::string("qubes.Svc a\0", 12));
    close(listener);
}

TEST(Prepare, SocketServiceFourTokenHeader) {
    TempDir t;
    int listener = listen_unix(t.sub("qubes.Foo"));
    auto c = *parse_command("QUBESRPC qubes.Foo+bar work keyword adminvm", false);
    auto r = prepare_call(c, SearchPaths{{t.path()}, {}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(read_header(listener), std::string("qubes.Foo+bar work keyword adminvm\0", 35));
    close(listener);
}

TEST(Prepare, SkipServiceDescriptor) {
    TempDir t;
    auto svc = t.mkdir("svc"), conf = t.mkdir("conf");
    int listener = listen_unix(svc + "/s");
    t.write("conf/s", "skip-service-descriptor = true\n");
    auto r =
        prepare_call(parsed_command("u:QUBESRPC s src", true), SearchPaths{{svc}, {conf}}, true);
    ASSERT_TRUE(r.ok());
    r.call->socket.reset(); // EOF without any header byte
    EXPECT_EQ(read_header(listener), "");
    close(listener);
}

TEST(Prepare, SocketConnectFailureIs125) {
    TempDir t;
    int listener = listen_unix(t.sub("s"));
    close(listener); // socket file remains, nobody listens
    auto r =
        prepare_call(parsed_command("u:QUBESRPC s src", true), SearchPaths{{t.path()}, {}}, true);
    EXPECT_EQ(r.failure, 125);
}

TEST(Prepare, LongSocketPathUsesTempSymlink) {
    TempDir t;
    std::string deep = t.mkdir(std::string(60, 'd') + "/" + std::string(60, 'e'));
    int listener = listen_unix(deep + "/svc");
    auto r =
        prepare_call(parsed_command("u:QUBESRPC svc src", true), SearchPaths{{deep}, {}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(read_header(listener), std::string("svc src\0", 8));
    EXPECT_EQ(tmp_links_to(deep), 0u); // temp dir removed again
    close(listener);
}

TEST(Prepare, TcpService) {
    TempDir t;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 1), 0);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    t.symlink("/dev/tcp/127.0.0.1", "tcp");
    auto port = std::to_string(ntohs(addr.sin_port));
    auto r = prepare_call(parsed_command("u:QUBESRPC tcp+" + port + " src", true),
                          SearchPaths{{t.path()}, {}}, true);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.call->kind, CallKind::Tcp);
    EXPECT_EQ(read_header(listener), "tcp+" + port + " src" + std::string(1, '\0'));
    // Bad spec (no argument) -> 125.
    EXPECT_EQ(
        prepare_call(parsed_command("u:QUBESRPC tcp src", true), SearchPaths{{t.path()}, {}}, true)
            .failure,
        125);
    close(listener);
}
