#include "services/tcp.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

using namespace qrexec::services;

namespace {
std::optional<std::string> arg(const char* text) {
    return std::string(text);
}
const std::optional<std::string> none;

void expect_target(std::optional<TcpTarget> t, const std::string& host, int port) {
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->host, host);
    EXPECT_EQ(t->port, port);
}
} // namespace

TEST(Tcp, FullSymlinkForm) {
    expect_target(parse_tcp_target("/dev/tcp/127.0.0.1/22", none), "127.0.0.1", 22);
    expect_target(parse_tcp_target("/dev/tcp/127.0.0.1/22", arg("")), "127.0.0.1", 22);
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/127.0.0.1/22", arg("x")));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp//22", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/127.0.0.1/", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/127.0.0.1/22/x", none));
}

TEST(Tcp, HostOnlyForm) {
    expect_target(parse_tcp_target("/dev/tcp/::1", arg("8080")), "::1", 8080);
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/127.0.0.1", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/127.0.0.1", arg("")));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/", arg("80")));
}

TEST(Tcp, BareForm) {
    expect_target(parse_tcp_target("/dev/tcp", arg("127.0.0.1+80")), "127.0.0.1", 80);
    expect_target(parse_tcp_target("/dev/tcp", arg("++1+8080")), "::1", 8080);
    expect_target(parse_tcp_target("/dev/tcp", arg("fe80++1+443")), "fe80::1", 443);
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", arg("")));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", arg("127.0.0.1")));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", arg("host_name+80")));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", arg("+80")));        // missing host
    EXPECT_FALSE(parse_tcp_target("/dev/tcp", arg("127.0.0.1+"))); // missing port
}

TEST(Tcp, PortRules) {
    expect_target(parse_tcp_target("/dev/tcp/1.2.3.4/1", none), "1.2.3.4", 1);
    expect_target(parse_tcp_target("/dev/tcp/1.2.3.4/65535", none), "1.2.3.4", 65535);
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/0", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/65536", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/080", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/8a", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/-1", none));
    EXPECT_FALSE(parse_tcp_target("/dev/tcp/1.2.3.4/+80", none));
}

TEST(Tcp, NumericHostsOnly) {
    std::string error;
    EXPECT_FALSE(connect_tcp(TcpTarget{"localhost", 80}, &error).valid());
    EXPECT_NE(error.find("invalid host"), std::string::npos);
    EXPECT_FALSE(connect_tcp(TcpTarget{"::1%", 80}, &error).valid());
    EXPECT_NE(error.find("invalid host"), std::string::npos);
    for (const char* bad : {"1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "127.0.0.1 x", "::1%no-such-if0",
                            "::1%99999999999", "::1%4294967296", "1.2.3.4%1", ":::", ""}) {
        error.clear();
        EXPECT_FALSE(connect_tcp(TcpTarget{bad, 80}, &error).valid()) << bad;
        EXPECT_NE(error.find("invalid host"), std::string::npos) << bad;
    }
}

// The numeric forms getaddrinfo(AI_NUMERICHOST) accepted, shorthands included.
TEST(Tcp, Ipv4ShorthandsReachLoopback) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(listen(listener, 4), 0);
    ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    uint16_t port = ntohs(addr.sin_port);
    std::string error;
    for (const char* host : {"127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433"}) {
        auto fd = connect_tcp(TcpTarget{host, port}, &error);
        EXPECT_TRUE(fd.valid()) << host << ": " << error;
    }
    close(listener);
}

// A scope given by interface name or number is accepted (the connect itself then
// decides): "lo" exists wherever these tests run.
TEST(Tcp, Ipv6ScopeByNameOrNumberConnectsToLoopback) {
    int listener = socket(AF_INET6, SOCK_STREAM, 0);
    if (listener < 0) GTEST_SKIP() << "no IPv6 here";
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    socklen_t len = sizeof addr;
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
        close(listener);
        GTEST_SKIP() << "no IPv6 loopback here";
    }
    ASSERT_EQ(listen(listener, 4), 0);
    ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    uint16_t port = ntohs(addr.sin6_port);
    std::string error;
    for (const std::string& host :
         std::vector<std::string>{"::1", "::1%lo", "::1%" + std::to_string(if_nametoindex("lo"))}) {
        auto fd = connect_tcp(TcpTarget{host, port}, &error);
        EXPECT_TRUE(fd.valid()) << host << ": " << error;
    }
    close(listener);
}

TEST(Tcp, ConnectsToLoopbackListener) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 1), 0);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    uint16_t port = ntohs(addr.sin_port);
    std::string error;
    auto fd = connect_tcp(TcpTarget{"127.0.0.1", port}, &error);
    EXPECT_TRUE(fd.valid()) << error;
    close(listener);
    // Nothing listens any more: refused.
    EXPECT_FALSE(connect_tcp(TcpTarget{"127.0.0.1", port}, &error).valid());
}
