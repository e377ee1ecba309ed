#include "services/rpc_config.h"

#include "test_util.h"

#include <gtest/gtest.h>

using namespace qrexec::services;
using namespace qrexec::services::fixtures;
using qrexec::services::fixtures::TempDir;

namespace {
bool accepts(std::string_view text) {
    std::string error;
    bool ok = parse_rpc_config(text, &error).has_value();
    EXPECT_TRUE(ok) << "rejected: '" << text << "': " << error;
    return ok;
}
bool rejects(std::string_view text) {
    std::string error;
    bool rejected = !parse_rpc_config(text, &error).has_value();
    EXPECT_TRUE(rejected) << "accepted: '" << text << "'";
    if (rejected) {
        EXPECT_FALSE(error.empty());
    }
    return rejected;
}
RpcConfig parsed(std::string_view text) {
    return parse_rpc_config(text).value_or(RpcConfig{});
}
} // namespace

TEST(RpcConfig, SpecRejectExamples) {
    rejects("wait-for-session = 00\n");
    rejects("wait-for-session = 01\n");
    rejects("wait-for-session = \n");
    rejects("wait-for-session = \"a\"\n");
    rejects("wait-for-session\n");
    rejects("wait-for-session = 2\n");
}

TEST(RpcConfig, SpecAcceptExamples) {
    EXPECT_TRUE(parsed("wait-for-session = 1 # comment\n").wait_for_session);
    EXPECT_EQ(parsed("force-user = 'user'\n").force_user, "user");
    EXPECT_TRUE(parsed("skip-service-descriptor = true\n").skip_service_descriptor);
}

TEST(RpcConfig, Defaults) {
    auto c = parsed("");
    EXPECT_FALSE(c.wait_for_session);
    EXPECT_FALSE(c.force_user);
    EXPECT_FALSE(c.skip_service_descriptor);
    EXPECT_FALSE(c.exit_on_client_eof);
    EXPECT_FALSE(c.exit_on_service_eof);
}

TEST(RpcConfig, LineEndings) {
    EXPECT_TRUE(parsed("wait-for-session=1").wait_for_session); // no final newline
    EXPECT_TRUE(parsed("wait-for-session = true\r\n").wait_for_session);
    EXPECT_TRUE(parsed("wait-for-session = true \t\n").wait_for_session); // trailing blanks
    EXPECT_FALSE(parsed("wait-for-session = 0\n").wait_for_session);
    EXPECT_FALSE(parsed("wait-for-session = false\n").wait_for_session);
}

TEST(RpcConfig, NulByteIsError) {
    rejects(std::string_view("wait-for-session = 1\n\0", 22));
}

TEST(RpcConfig, CommentsAndEmptyLines) {
    accepts("\n# comment\n\nwait-for-session = 1\n#x\n");
    rejects("  \n");         // blank-only line
    rejects("\t\n");         //
    rejects(" # comment\n"); // leading blank
    rejects(" wait-for-session = 1\n");
}

TEST(RpcConfig, LineStartRules) {
    rejects("[table]\n");
    rejects("1key = 1\n");
    rejects("_key = 1\n");
    rejects("-key = 1\n");
    accepts("k = 1\n");
    accepts("Key.sub_x-1 = true\n"); // unknown key, valid syntax
}

TEST(RpcConfig, KeySyntax) {
    rejects("key: 1\n");
    rejects("key 1\n");
    rejects("key$ = 1\n");
    accepts("key=1\n");
    accepts("key\t=\t1\n");
}

TEST(RpcConfig, Values) {
    accepts("k = true\n");
    accepts("k = false\n");
    accepts("k = 0\n");
    accepts("k = 123\n");
    accepts("k = 'text with # hash'\n");
    accepts("k = ''\n");
    accepts("k = true#comment\n");
    rejects("k = True\n");
    rejects("k = truex\n");
    rejects("k = 1x\n");
    rejects("k = 1.5\n");
    rejects("k = -1\n");
    rejects("k = +1\n");
    rejects("k = 'unterminated\n");
    rejects("k = '''x'''\n");
    rejects("k = 'a' b\n");
    rejects("k = \"a\"\n");
    rejects("k = [1]\n");
    rejects("k = \n");
    rejects("k =\n");
    rejects("k = # no value\n");
    rejects("k = 99999999999999999999999\n");
}

TEST(RpcConfig, DuplicateKeys) {
    rejects("wait-for-session = 1\nwait-for-session = 1\n");
    rejects("unknown = 1\nunknown = 2\n");
}

TEST(RpcConfig, WrongTypes) {
    rejects("wait-for-session = 'yes'\n");
    rejects("force-user = true\n");
    rejects("force-user = 1\n");
    rejects("skip-service-descriptor = 1\n");
    rejects("exit-on-client-eof = 'true'\n");
    rejects("exit-on-service-eof = 0\n");
}

TEST(RpcConfig, AllKeys) {
    auto c = parsed("exit-on-client-eof = true\nexit-on-service-eof = true\n"
                    "skip-service-descriptor = true\nwait-for-session = true\n");
    EXPECT_TRUE(c.exit_on_client_eof);
    EXPECT_TRUE(c.exit_on_service_eof);
    EXPECT_TRUE(c.skip_service_descriptor);
    EXPECT_TRUE(c.wait_for_session);
}

TEST(RpcConfig, ForceUserCombinations) {
    rejects("force-user = 'u'\nskip-service-descriptor = true\n");
    rejects("force-user = 'u'\nexit-on-client-eof = true\n");
    rejects("exit-on-service-eof = true\nforce-user = 'u'\n");
    accepts("force-user = 'u'\nskip-service-descriptor = false\nwait-for-session = 1\n");
    rejects("force-user = ''\n");
}

namespace {} // namespace

TEST(RpcConfig, LoadLookupOrder) {
    TempDir t;
    auto a = t.mkdir("a"), b = t.mkdir("b");
    t.write("a/svc", "wait-for-session = 1\n");
    t.write("b/svc+arg", "skip-service-descriptor = true\n");
    auto specific = load_rpc_config({a, b}, service_call("svc+arg"));
    ASSERT_TRUE(specific.ok) << specific.error;
    EXPECT_TRUE(specific.config.skip_service_descriptor);
    EXPECT_FALSE(specific.config.wait_for_session);
    auto general = load_rpc_config({a, b}, service_call("svc+x"));
    ASSERT_TRUE(general.ok);
    EXPECT_TRUE(general.config.wait_for_session);
    t.write("b/svc+", "exit-on-client-eof = true\n");
    auto plus = load_rpc_config({a, b}, service_call("svc"));
    EXPECT_TRUE(plus.config.exit_on_client_eof);
}

TEST(RpcConfig, LoadAbsentIsDefaults) {
    TempDir t;
    auto load = load_rpc_config({t.path()}, service_call("svc"));
    EXPECT_TRUE(load.ok);
    EXPECT_FALSE(load.config.wait_for_session);
}

TEST(RpcConfig, LoadErrors) {
    TempDir t;
    auto a = t.mkdir("a");
    t.write("a/bad", "wait-for-session = 2\n");
    auto bad = load_rpc_config({a}, service_call("bad"));
    EXPECT_FALSE(bad.ok);
    EXPECT_FALSE(bad.error.empty());
    t.mkdir("a/dir"); // unreadable as a file
    EXPECT_FALSE(load_rpc_config({a}, service_call("dir")).ok);
    t.write("notdir", "");
    EXPECT_FALSE(load_rpc_config({t.sub("notdir")}, service_call("svc")).ok);
    // Symlinks are simply followed; dangling = absent.
    t.symlink("/dev/tcp/127.0.0.1/1", "a/tcp");
    EXPECT_TRUE(load_rpc_config({a}, service_call("tcp")).ok);
    t.write("a/real", "wait-for-session = true\n");
    t.symlink("real", "a/link");
    EXPECT_TRUE(load_rpc_config({a}, service_call("link")).config.wait_for_session);
}
