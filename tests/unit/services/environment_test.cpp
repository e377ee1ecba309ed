#include "services/environment.h"

#include "test_util.h"

#include <gtest/gtest.h>

using namespace qrexec::services;
using namespace qrexec::services::fixtures;

namespace {
std::optional<std::string> get(const EnvList& env, std::string_view name) {
    auto e = find_env(env, name);
    if (!e) return std::nullopt;
    return e->substr(name.size() + 1);
}
} // namespace

TEST(Environment, StripsQrexecVariables) {
    EnvList base{"PATH=/bin",
                 "QREXEC_SERVICE_ARGUMENT=stale",
                 "QREXEC_REQUESTED_TARGET=x",
                 "QREXEC_SERVICE_PATH=/srv",
                 "QREXEC_AGENT_PID=42",
                 "QREXECFOO=1",
                 "XQREXEC=keep"};
    auto env = build_service_environment(base, parsed_command("QUBESRPC svc src", false));
    EXPECT_EQ(get(env, "PATH"), "/bin");
    EXPECT_EQ(get(env, "QREXEC_SERVICE_PATH"), "/srv");
    EXPECT_EQ(get(env, "QREXEC_AGENT_PID"), "42");
    EXPECT_EQ(get(env, "XQREXEC"), "keep");
    EXPECT_FALSE(get(env, "QREXECFOO"));
    EXPECT_FALSE(get(env, "QREXEC_SERVICE_ARGUMENT"));
    EXPECT_FALSE(get(env, "QREXEC_REQUESTED_TARGET"));
}

TEST(Environment, TwoTokenService) {
    auto env = build_service_environment({}, parsed_command("QUBESRPC qubes.Foo+bar work", false));
    EXPECT_EQ(get(env, "QREXEC_SERVICE_FULL_NAME"), "qubes.Foo+bar");
    EXPECT_EQ(get(env, "QREXEC_REMOTE_DOMAIN"), "work");
    EXPECT_EQ(get(env, "QREXEC_SERVICE_ARGUMENT"), "bar");
    EXPECT_EQ(get(env, "QREXEC_REQUESTED_TARGET_TYPE"), "");
    EXPECT_FALSE(get(env, "QREXEC_REQUESTED_TARGET"));
    EXPECT_FALSE(get(env, "QREXEC_REQUESTED_TARGET_KEYWORD"));
}

TEST(Environment, ArgumentOnlyWithPlus) {
    auto none = build_service_environment({}, parsed_command("QUBESRPC qubes.Foo work", false));
    EXPECT_EQ(get(none, "QREXEC_SERVICE_FULL_NAME"), "qubes.Foo");
    EXPECT_FALSE(get(none, "QREXEC_SERVICE_ARGUMENT"));
    auto empty = build_service_environment({}, parsed_command("QUBESRPC qubes.Foo+ work", false));
    EXPECT_EQ(get(empty, "QREXEC_SERVICE_ARGUMENT"), "");
}

TEST(Environment, FourTokenTargets) {
    auto kw = build_service_environment(
        {}, parsed_command("QUBESRPC svc+arg src keyword adminvm", false));
    EXPECT_EQ(get(kw, "QREXEC_REQUESTED_TARGET_TYPE"), "keyword");
    EXPECT_EQ(get(kw, "QREXEC_REQUESTED_TARGET_KEYWORD"), "adminvm");
    EXPECT_FALSE(get(kw, "QREXEC_REQUESTED_TARGET"));
    auto name =
        build_service_environment({}, parsed_command("QUBESRPC svc+arg src name dom0", false));
    EXPECT_EQ(get(name, "QREXEC_REQUESTED_TARGET_TYPE"), "name");
    EXPECT_EQ(get(name, "QREXEC_REQUESTED_TARGET"), "dom0");
    EXPECT_FALSE(get(name, "QREXEC_REQUESTED_TARGET_KEYWORD"));
    auto other = build_service_environment({}, parsed_command("QUBESRPC svc src uuid x", false));
    EXPECT_EQ(get(other, "QREXEC_REQUESTED_TARGET_TYPE"), "uuid");
    EXPECT_FALSE(get(other, "QREXEC_REQUESTED_TARGET"));
    EXPECT_FALSE(get(other, "QREXEC_REQUESTED_TARGET_KEYWORD"));
}

TEST(Environment, Argv) {
    EXPECT_EQ(build_service_argv("/p/svc", parsed_command("QUBESRPC svc+arg src", false)),
              (std::vector<std::string>{"/p/svc", "arg"}));
    EXPECT_EQ(build_service_argv("/p/svc", parsed_command("QUBESRPC svc+ src", false)),
              (std::vector<std::string>{"/p/svc"}));
    EXPECT_EQ(build_service_argv("/p/svc", parsed_command("QUBESRPC svc src", false)),
              (std::vector<std::string>{"/p/svc"}));
}

TEST(Environment, SetEnvReplaces) {
    EnvList env{"A=1", "AB=2"};
    set_env(env, "A", "3");
    EXPECT_EQ(env, (EnvList{"A=3", "AB=2"}));
    set_env(env, "C", "");
    EXPECT_EQ(env.back(), "C=");
}
