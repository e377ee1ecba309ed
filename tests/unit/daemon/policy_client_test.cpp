// DAEMON.md §5.2-§5.5: request text, strict reply parsing, call plan, qubesd.
#include "daemon/policy_client.h"

#include <gtest/gtest.h>

using namespace qrexec::daemon;
using namespace std::string_view_literals;

TEST(PolicyRequest, TextV4IncludesRequestedSourceEvenIfEmpty) {
    PolicyQuery q{"work", std::string(), "vault", "qubes.Filecopy"};
    EXPECT_EQ(format_policy_request(q), "source=work\nrequested_source=\nintended_target=vault\n"
                                        "service_and_arg=qubes.Filecopy\n\n");
}

TEST(PolicyRequest, TextV3OmitsRequestedSource) {
    PolicyQuery q{"work", std::nullopt, "", "svc+arg"};
    EXPECT_EQ(format_policy_request(q),
              "source=work\nintended_target=\nservice_and_arg=svc+arg\n\n");
}

TEST(PolicyRequest, ProgramArgv) {
    PolicyQuery q{"work", std::string("relay"), "", "qubes.Filecopy"};
    std::vector<std::string> expected{"qrexec-policy-exec", "--", "work", "", "qubes.Filecopy"};
    EXPECT_EQ(policy_program_argv(q), expected);
}

namespace {
constexpr std::string_view kAllow =
    "result=allow\nuser=bob\ntarget=vault\nautostart=True\nrequested_target=@default\n";
}

TEST(PolicyReply, Allow) {
    auto p = parse_policy_reply(kAllow);
    ASSERT_TRUE(p.decision) << p.error;
    EXPECT_TRUE(p.decision->allow);
    EXPECT_EQ(p.decision->user, "bob");
    EXPECT_EQ(p.decision->target, "vault");
    EXPECT_TRUE(p.decision->autostart);
    EXPECT_EQ(p.decision->requested_target, "@default");
    EXPECT_FALSE(p.decision->target_uuid);
    EXPECT_FALSE(p.decision->service);
    EXPECT_FALSE(p.decision->policy_source);
}

TEST(PolicyReply, AllowWithoutTrailingNewlineAndAnyOrder) {
    auto p = parse_policy_reply(
        "autostart=False\ntarget_uuid=uuid:x\nrequested_target=v\ntarget=v\nuser=u\n"
        "service=s+a\npolicy_source=src\nresult=allow");
    ASSERT_TRUE(p.decision) << p.error;
    EXPECT_FALSE(p.decision->autostart);
    EXPECT_EQ(p.decision->target_uuid, "uuid:x");
    EXPECT_EQ(p.decision->service, "s+a");
    EXPECT_EQ(p.decision->policy_source, "src");
}

TEST(PolicyReply, Deny) {
    auto p = parse_policy_reply("result=deny\n");
    ASSERT_TRUE(p.decision);
    EXPECT_FALSE(p.decision->allow);
    EXPECT_TRUE(parse_policy_reply("result=deny").decision);
}

TEST(PolicyReply, UnknownKeysIgnored) {
    auto p = parse_policy_reply("result=deny\nfoo=bar\nx=\n");
    ASSERT_TRUE(p.decision);
    EXPECT_EQ(p.ignored_lines, (std::vector<std::string>{"foo=bar", "x="}));
}

TEST(PolicyReply, ValueMayContainEquals) {
    auto p =
        parse_policy_reply("result=allow\nuser=a=b\ntarget=v\nautostart=False\nrequested_target=v");
    ASSERT_TRUE(p.decision);
    EXPECT_EQ(p.decision->user, "a=b");
}

TEST(PolicyReply, Malformed) {
    const std::string_view cases[] = {
        ""sv,
        "\n"sv,
        "result=deny\n\n"sv, // two trailing newlines = empty line
        "result=deny\0"sv,   // NUL byte
        "result=maybe\n"sv,
        "result=allow\n"sv,        // allow needs the four keys
        "result=deny\nuser=x\n"sv, // deny forbids them
        "result=deny\ntarget=x\n"sv,
        "result=deny\nautostart=True\n"sv,
        "result=deny\nrequested_target=x\n"sv,
        "result=deny\nresult=deny\n"sv, // duplicate
        "user=x\n"sv,                   // no result
        "result=deny\nnoequals\n"sv,
        "result=allow\nuser=bob\ntarget=vault\nautostart=true\nrequested_target=v\n"sv,
        "result=allow\nuser=bob\ntarget=vault\nautostart=True\nrequested_target=v\nuser=x"sv,
        " result=deny\n"sv, // exact key match only
    };
    for (auto reply : cases) {
        auto p = parse_policy_reply(reply);
        EXPECT_FALSE(p.decision) << "accepted: " << reply;
        EXPECT_FALSE(p.error.empty());
    }
}

TEST(PolicyReply, DenyMayCarryOptionalKeys) {
    auto p = parse_policy_reply("result=deny\ntarget_uuid=uuid:x\nservice=s\n");
    ASSERT_TRUE(p.decision);
}

namespace {
PolicyDecision allow(std::string target, std::string rt = "vault") {
    PolicyDecision d;
    d.allow = true;
    d.user = "DEFAULT";
    d.target = std::move(target);
    d.requested_target = std::move(rt);
    return d;
}
} // namespace

TEST(CallPlan, VmTarget) {
    auto plan = plan_call(allow("vault"), "qubes.Svc", "work");
    EXPECT_FALSE(plan.to_dom0);
    EXPECT_EQ(plan.command, "DEFAULT:QUBESRPC qubes.Svc+ work");
    EXPECT_EQ(plan.destination, "vault");
    EXPECT_EQ(plan.source, "work");
}

TEST(CallPlan, ServiceWithArgKeepsPlus) {
    auto plan = plan_call(allow("vault"), "qubes.Svc+arg", "work");
    EXPECT_EQ(plan.command, "DEFAULT:QUBESRPC qubes.Svc+arg work");
}

TEST(CallPlan, UuidAndOverrides) {
    auto d = allow("vault");
    d.target_uuid = "uuid:abc";
    d.service = "other+x";
    d.policy_source = "relay";
    d.autostart = true;
    auto plan = plan_call(d, "qubes.Svc", "work");
    EXPECT_EQ(plan.destination, "uuid:abc");
    EXPECT_EQ(plan.command, "DEFAULT:QUBESRPC other+x relay");
    EXPECT_TRUE(plan.autostart);
}

TEST(CallPlan, Dom0Targets) {
    for (auto name : {"dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"}) {
        auto plan = plan_call(allow(name, "@adminvm"), "qubes.GetDate", "work");
        EXPECT_TRUE(plan.to_dom0) << name;
        EXPECT_EQ(plan.command, "QUBESRPC qubes.GetDate+ work keyword adminvm");
    }
    auto named = plan_call(allow("dom0", "dom0"), "s+a", "work");
    EXPECT_EQ(named.command, "QUBESRPC s+a work name dom0");
    auto d = allow("whatever", "dom0");
    d.target_uuid = "uuid:00000000-0000-0000-0000-000000000000";
    EXPECT_TRUE(plan_call(d, "s", "w").to_dom0);
}

TEST(CallPlan, Dispvm) {
    EXPECT_EQ(dispvm_template("@dispvm:tpl"), "tpl");
    EXPECT_EQ(dispvm_template("@dispvm:uuid:x"), "uuid:x");
    EXPECT_FALSE(dispvm_template("@dispvm"));
    EXPECT_FALSE(dispvm_template("vault"));
}

TEST(Destination, Safety) {
    EXPECT_TRUE(is_safe_destination("vault"));
    EXPECT_TRUE(is_safe_destination("uuid:0123"));
    EXPECT_FALSE(is_safe_destination(""));
    EXPECT_FALSE(is_safe_destination(".."));
    EXPECT_FALSE(is_safe_destination("a/b"));
    EXPECT_FALSE(is_safe_destination(std::string(200, 'a')));
}
