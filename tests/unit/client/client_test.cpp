#include "client/options.h"
#include "io/fd.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

using namespace qrexec::client;

namespace {

ParsedOptions parse(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/qrexec-client");
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_client_options(static_cast<int>(args.size()), argv.data());
}

} // namespace

TEST(ClientOptions, Defaults) {
    auto r = parse({"-d", "work", "user:cmd"});
    ASSERT_TRUE(r.options);
    EXPECT_EQ(r.options->program, "qrexec-client");
    EXPECT_EQ(r.options->domain, "work");
    EXPECT_EQ(r.options->command, "user:cmd");
    EXPECT_EQ(r.options->timeout_seconds, 10);
    EXPECT_EQ(r.options->socket_dir, "/var/run/qubes");
    EXPECT_FALSE(r.options->prefix_data);
}

TEST(ClientOptions, AllValues) {
    auto r = parse({"-dwork", "-w5", "-p", "DATA", "-t", "-T", "-E", "-k", "--socket-dir", "/s",
                    "cmd", "ignored"});
    ASSERT_TRUE(r.options);
    EXPECT_EQ(r.options->timeout_seconds, 5);
    EXPECT_EQ(r.options->prefix_data, "DATA");
    EXPECT_TRUE(r.options->filter_stdout && r.options->filter_stderr);
    EXPECT_TRUE(r.options->no_exit_code && r.options->kill);
    EXPECT_EQ(r.options->socket_dir, "/s");
    EXPECT_EQ(r.options->command, "cmd");
}

TEST(ClientOptions, ConnectRequest) {
    auto r = parse({"-d", "dom0", "-c", "SOCKET5,work,42", "QUBESRPC a b"});
    ASSERT_TRUE(r.options && r.options->connect);
    EXPECT_EQ(r.options->connect->request_id, "SOCKET5");
    EXPECT_EQ(r.options->connect->source_name, "work");
    EXPECT_EQ(r.options->connect->source_id, 42);
    EXPECT_EQ(parse({"-d", "dom0", "-c", "a,b,2147483648", "x"}).exit_code, 1);
    EXPECT_EQ(parse({"-d", "dom0", "-c", "a,@adminvm,3", "x"}).exit_code, 1);
}

TEST(ClientOptions, Dom0Names) {
    EXPECT_TRUE(is_dom0_name("dom0"));
    EXPECT_TRUE(is_dom0_name("@adminvm"));
    EXPECT_TRUE(is_dom0_name("uuid:00000000-0000-0000-0000-000000000000"));
    EXPECT_FALSE(is_dom0_name("uuid:00000000-0000-0000-0000-000000000001"));
    EXPECT_FALSE(is_dom0_name("dom01"));
}
