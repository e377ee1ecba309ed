#include "policy_fixture.h"

#include <gmock/gmock.h>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;
using ::testing::HasSubstr;

namespace {

class Example : public ::testing::Test {
  protected:
    SystemInfo sys = example_system();
    Policy policy = load_one(kDemoPolicy, "10-demo.policy");
    Decision eval(Request r) { return evaluate(policy, sys, r); }
    Decision eval(std::string s, std::string t, std::string svc) { return eval(req(s, t, svc)); }
};

TEST_F(Example, PolicyLoads) {
    ASSERT_TRUE(policy.ok()) << *policy.error;
}

// POLICY.md §12, examples 1-11.
TEST_F(Example, E1_TaggedSourceAllowed) {
    Decision d = eval("work", "personal", "qubes.Filecopy");
    EXPECT_TRUE(d.allowed());
    EXPECT_EQ(d.rule->line, 3);
    EXPECT_EQ(d.answer, lines({"user=DEFAULT", "result=allow", "target=personal",
                               "target_uuid=uuid:11111111-0000-0000-0000-000000000002",
                               "autostart=True", "requested_target=personal"}));
    EXPECT_FALSE(d.notify);
}

TEST_F(Example, E2_UntrustedDenied) {
    Decision d = eval("untrusted", "work", "qubes.Filecopy");
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_EQ(d.rule->line, 1);
    EXPECT_TRUE(d.notify);
}

TEST_F(Example, E3_DefaultRedirected) {
    Decision d = eval("work", "", "demo.Echo");
    EXPECT_EQ(d.rule->line, 4);
    EXPECT_EQ(d.answer, lines({"user=DEFAULT", "result=allow", "target=personal",
                               "target_uuid=uuid:11111111-0000-0000-0000-000000000002",
                               "autostart=True", "requested_target=@default"}));
}

TEST_F(Example, E4_Loopback) {
    Decision d = eval("personal", "", "demo.Echo");
    EXPECT_EQ(d.rule->line, 4);
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_THAT(d.reason, HasSubstr("loopback"));
    EXPECT_TRUE(d.notify);
}

TEST_F(Example, E5_Disposable) {
    Decision d = eval("work", "@dispvm", "demo.Echo+hello");
    EXPECT_EQ(d.rule->line, 5);
    EXPECT_EQ(d.answer, lines({"user=DEFAULT", "result=allow", "target=@dispvm:dvm-tpl",
                               "target_uuid=@dispvm:uuid:11111111-0000-0000-0000-000000000004",
                               "autostart=True", "requested_target=@dispvm"}));
}

TEST_F(Example, E6_AdminVm) {
    Decision d = eval("personal", "@adminvm", "demo.Echo+x");
    EXPECT_EQ(d.rule->line, 6);
    EXPECT_EQ(d.answer, lines({"user=root", "result=allow", "target=dom0", "autostart=True",
                               "requested_target=@adminvm"}));
}

TEST_F(Example, E7_HaltedNoAutostart) {
    Decision d = eval("work", "vault", "demo.Vault");
    EXPECT_EQ(d.rule->line, 7);
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_FALSE(d.notify); // allow rule's notify, default no
}

TEST_F(Example, E8_Ask) {
    Decision d = eval("personal", "vault", "qubes.Filecopy");
    ASSERT_EQ(d.outcome, Outcome::Ask);
    EXPECT_EQ(d.rule->line, 2);
    EXPECT_EQ(d.ask->targets, std::vector<std::string>{"vault"});
    EXPECT_EQ(d.ask->default_target, "vault");
    Decision yes = answer_ask(d, sys, std::string("vault"));
    EXPECT_EQ(yes.answer, lines({"user=DEFAULT", "result=allow", "target=vault",
                                 "target_uuid=uuid:11111111-0000-0000-0000-000000000003",
                                 "autostart=True", "requested_target=vault"}));
    Decision no = answer_ask(d, sys, std::nullopt);
    EXPECT_EQ(no.answer, "result=deny");
    EXPECT_FALSE(no.notify);
    Decision other = answer_ask(d, sys, std::string("work"));
    EXPECT_EQ(other.answer, "result=deny");

    Request r = req("personal", "vault", "qubes.Filecopy");
    r.just_evaluate = true;
    EXPECT_EQ(eval(r).answer, "result=deny");
    r.assume_yes_for_ask = true;
    EXPECT_EQ(eval(r).answer, "result=allow");
    r.just_evaluate = false;
    EXPECT_EQ(eval(r).answer, yes.answer);
}

TEST_F(Example, E9_UnknownTargetBecomesDefault) {
    Decision d = eval("work", "nonexistent", "qubes.Filecopy");
    EXPECT_EQ(d.rule->line, 3);
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_THAT(d.reason, HasSubstr("no target is specified by caller or policy"));
}

TEST_F(Example, E10_CatchAllNoNotify) {
    Decision d = eval("work", "personal", "other.Service");
    EXPECT_EQ(d.rule->line, 8);
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_FALSE(d.notify);
}

TEST_F(Example, E11_InvalidIntendedTarget) {
    for (const char* t : {"@tag:trusted", "*", "@anyvm", "@type:AppVM", "@dispvm:@tag:x", "@x"}) {
        Decision d = eval("work", t, "qubes.Filecopy");
        EXPECT_EQ(d.answer, "result=deny") << t;
        EXPECT_FALSE(d.rule) << t;
        EXPECT_FALSE(d.notify) << t;
        EXPECT_THAT(d.reason, HasSubstr("invalid intended target")) << t;
    }
}

TEST_F(Example, JustEvaluateAllowIsBare) {
    Request r = req("work", "personal", "qubes.Filecopy");
    r.just_evaluate = true;
    Decision d = eval(r);
    EXPECT_EQ(d.answer, "result=allow");
    EXPECT_FALSE(d.notify);
}

TEST_F(Example, NoMatchingRule) {
    Policy empty = load_one("other.X * @anyvm @anyvm allow\n");
    Decision d = evaluate(empty, sys, req("work", "personal", "qubes.Filecopy"));
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_EQ(d.reason, "no matching rule found");
    EXPECT_TRUE(d.notify);
    EXPECT_FALSE(d.rule);
}

TEST_F(Example, BrokenPolicyDeniesWithoutNotify) {
    Policy broken = load_one("broken\n");
    Decision d = evaluate(broken, sys, req("work", "personal", "qubes.Filecopy"));
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_FALSE(d.notify);
    EXPECT_THAT(d.reason, HasSubstr("error loading policy: /etc/qubes/policy.d/10-test.policy:1"));
}

TEST(SystemInfoFailure, DeniesWithoutNotify) {
    Decision d = deny_without_system_info(req("work", "vault", "a.B+c"), "boom");
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_FALSE(d.notify);
    EXPECT_EQ(d.service, "a.B");
    EXPECT_EQ(d.argument, "+c");
}

// --- matching (§3.1) ---

class Match : public ::testing::Test {
  protected:
    SystemInfo sys = example_system();
    // Does a rule with this SOURCE/TARGET match the request?
    bool matches(const std::string& src_tok, const std::string& tgt_tok, const std::string& source,
                 const std::string& target) {
        Policy p = load_one("a.B * " + src_tok + " " + tgt_tok + " deny notify=no\n");
        EXPECT_TRUE(p.ok()) << *p.error;
        Decision d = evaluate(p, sys, req(source, target, "a.B"));
        return d.rule.has_value();
    }
};

TEST_F(Match, Dom0Spellings) {
    for (const char* tok : {"dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"})
        for (const char* val : {"dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"})
            EXPECT_TRUE(matches("*", tok, "work", val)) << tok << " vs " << val;
    EXPECT_TRUE(matches("dom0", "*", "dom0", "work"));
    EXPECT_TRUE(matches("@adminvm", "*", "dom0", "work"));
    EXPECT_FALSE(matches("@adminvm", "*", "work", "dom0"));
}

TEST_F(Match, Literal) {
    EXPECT_TRUE(matches("work", "vault", "work", "vault"));
    EXPECT_FALSE(matches("work", "vault", "work", "personal"));
    EXPECT_TRUE(matches("*", "uuid:11111111-0000-0000-0000-000000000003", "work", "vault"));
    EXPECT_TRUE(matches("*", "vault", "work", "uuid:11111111-0000-0000-0000-000000000003"));
    EXPECT_TRUE(matches("uuid:11111111-0000-0000-0000-000000000001", "*", "work", "vault"));
    EXPECT_FALSE(matches("*", "vault", "work", "dom0"));
}

TEST_F(Match, Star) {
    for (const char* t : {"vault", "dom0", "@adminvm", "", "@dispvm", "@dispvm:dvm-tpl"})
        EXPECT_TRUE(matches("*", "*", "work", t)) << t;
    EXPECT_TRUE(matches("*", "*", "dom0", "work"));
}

TEST_F(Match, AnyVm) {
    for (const char* t : {"vault", "", "@dispvm", "@dispvm:dvm-tpl", "nonexistent"})
        EXPECT_TRUE(matches("@anyvm", "@anyvm", "work", t)) << t;
    for (const char* t : {"dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"})
        EXPECT_FALSE(matches("@anyvm", "@anyvm", "work", t)) << t;
    EXPECT_FALSE(matches("@anyvm", "*", "dom0", "work"));
}

TEST_F(Match, Default) {
    EXPECT_TRUE(matches("*", "@default", "work", ""));
    EXPECT_TRUE(matches("*", "@default", "work", "@default"));
    EXPECT_TRUE(matches("*", "@default", "work", "nonexistent"));
    EXPECT_FALSE(matches("*", "@default", "work", "vault"));
}

TEST_F(Match, Type) {
    EXPECT_TRUE(matches("@type:AppVM", "@type:AppVM", "work", "vault"));
    EXPECT_TRUE(matches("*", "@type:AdminVM", "work", "dom0"));
    EXPECT_FALSE(matches("*", "@type:AdminVM", "work", "@adminvm"));
    EXPECT_FALSE(matches("*", "@type:AppVM", "work", "@dispvm"));
    EXPECT_FALSE(matches("@type:TemplateVM", "*", "work", "vault"));
}

TEST_F(Match, Tag) {
    EXPECT_TRUE(matches("@tag:trusted", "*", "work", "vault"));
    EXPECT_FALSE(matches("@tag:trusted", "*", "personal", "vault"));
    EXPECT_TRUE(matches("*", "@tag:trusted", "personal", "work"));
    EXPECT_FALSE(matches("*", "@tag:trusted", "personal", "@default"));
}

TEST_F(Match, DispVm) {
    EXPECT_TRUE(matches("*", "@dispvm", "work", "@dispvm"));
    EXPECT_FALSE(matches("*", "@dispvm", "work", "@dispvm:dvm-tpl"));
    EXPECT_TRUE(matches("*", "@dispvm:dvm-tpl", "work", "@dispvm:dvm-tpl"));
    EXPECT_TRUE(matches("*", "@dispvm:dvm-tpl", "work", "@dispvm"));       // work's default
    EXPECT_FALSE(matches("*", "@dispvm:dvm-tpl", "untrusted", "@dispvm")); // no default
    EXPECT_FALSE(matches("*", "@dispvm:dvm-tpl", "work", "dvm-tpl"));
    EXPECT_TRUE(matches("*", "@dispvm:uuid:11111111-0000-0000-0000-000000000004", "work",
                        "@dispvm:dvm-tpl"));
    EXPECT_TRUE(matches("*", "@dispvm:dvm-tpl", "work",
                        "@dispvm:uuid:11111111-0000-0000-0000-000000000004"));
    // Source @dispvm tokens never match a plain source.
    EXPECT_FALSE(matches("@dispvm:dvm-tpl", "*", "work", "vault"));
}

TEST_F(Match, DispVmTag) {
    SystemInfo extra = sys;
    Domain d = *sys.find("dvm-tpl");
    d.tags = {"dvm-ok"};
    extra.add(d);
    sys = extra;
    EXPECT_TRUE(matches("*", "@dispvm:@tag:dvm-ok", "work", "@dispvm:dvm-tpl"));
    EXPECT_TRUE(matches("*", "@dispvm:@tag:dvm-ok", "work", "@dispvm"));
    EXPECT_FALSE(matches("*", "@dispvm:@tag:other", "work", "@dispvm:dvm-tpl"));
    EXPECT_FALSE(matches("*", "@dispvm:@tag:dvm-ok", "work", "dvm-tpl"));
}

TEST_F(Match, ServiceAndArgument) {
    Policy p = load_one("a.B +x * * deny notify=no\n"
                        "a.B + * * allow target=vault\n"
                        "* * * * deny\n");
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B+x")).rule->line, 1);
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B")).rule->line, 2);
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B+")).rule->line, 2);
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B+x+y")).rule->line, 3);
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.C+x")).rule->line, 3);
}

// --- intended target normalisation (§4) ---

TEST_F(Match, IntendedDispvmTemplateMustBeTemplate) {
    Policy p = load_one("* * @anyvm @anyvm allow\n");
    Decision d = evaluate(p, sys, req("work", "@dispvm:vault", "a.B"));
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_TRUE(d.notify);
    EXPECT_EQ(d.reason, "not a template for dispvm: vault");
    EXPECT_EQ(evaluate(p, sys, req("work", "@dispvm:nope", "a.B")).answer, "result=deny");
    EXPECT_EQ(evaluate(p, sys, req("work", "@dispvm:dvm-tpl", "a.B")).answer,
              lines({"user=DEFAULT", "result=allow", "target=@dispvm:dvm-tpl",
                     "target_uuid=@dispvm:uuid:11111111-0000-0000-0000-000000000004",
                     "autostart=True", "requested_target=@dispvm:dvm-tpl"}));
}

TEST_F(Match, UuidIntendedTarget) {
    Policy p = load_one("* * @anyvm @anyvm allow\n");
    Decision d = evaluate(p, sys, req("work", "uuid:11111111-0000-0000-0000-000000000003", "a.B"));
    EXPECT_EQ(
        d.answer,
        lines({"user=DEFAULT", "result=allow", "target=uuid:11111111-0000-0000-0000-000000000003",
               "target_uuid=uuid:11111111-0000-0000-0000-000000000003", "autostart=True",
               "requested_target=uuid:11111111-0000-0000-0000-000000000003"}));
}

// --- allow (§7) ---

TEST_F(Match, AllowDispvmWithoutDefault) {
    Policy p = load_one("* * @anyvm @dispvm allow\n");
    Decision d = evaluate(p, sys, req("untrusted", "@dispvm", "a.B"));
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_THAT(d.reason, HasSubstr("no DispVM base is set"));
    EXPECT_TRUE(d.notify);
}

TEST_F(Match, AllowRedirects) {
    Policy p =
        load_one("a.B * @anyvm @anyvm allow target=@adminvm user=x\n"
                 "a.C * @anyvm @anyvm allow target=@dispvm notify=yes\n"
                 "a.D * @anyvm @anyvm allow target=nonexistent\n"
                 "a.E * @anyvm @anyvm allow target=uuid:11111111-0000-0000-0000-000000000003\n");
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B")).answer,
              lines({"user=x", "result=allow", "target=dom0", "autostart=True",
                     "requested_target=vault"}));
    Decision c = evaluate(p, sys, req("work", "vault", "a.C"));
    EXPECT_THAT(c.answer, HasSubstr("target=@dispvm:dvm-tpl\n"));
    EXPECT_TRUE(c.notify);
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.D")).answer, "result=deny");
    // Errata 1: printed as written.
    EXPECT_THAT(evaluate(p, sys, req("work", "vault", "a.E")).answer,
                HasSubstr("\ntarget=uuid:11111111-0000-0000-0000-000000000003\n"));
}

TEST_F(Match, AutostartNo) {
    Policy p = load_one("* * @anyvm @anyvm allow autostart=no\n"
                        "* * @anyvm @adminvm allow autostart=no\n"
                        "* * @anyvm @dispvm allow autostart=no\n");
    EXPECT_EQ(evaluate(p, sys, req("work", "personal", "a.B")).answer,
              lines({"user=DEFAULT", "result=allow", "target=personal",
                     "target_uuid=uuid:11111111-0000-0000-0000-000000000002", "autostart=False",
                     "requested_target=personal"}));
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B")).answer, "result=deny");
    EXPECT_THAT(evaluate(p, sys, req("work", "dom0", "a.B")).answer, HasSubstr("target=dom0"));
    EXPECT_EQ(evaluate(p, sys, req("work", "@dispvm", "a.B")).answer, "result=deny");
}

// --- relayed calls (§4 requested source) and RemoteVM targets ---

class Remote : public ::testing::Test {
  protected:
    SystemInfo sys = [] {
        SystemInfo s = example_system();
        Domain remote;
        remote.name = "remote1";
        remote.uuid = "22222222-0000-0000-0000-000000000001";
        remote.type = "RemoteVM";
        remote.relayvm = "work";
        remote.transport_rpc = "qubesair.SSHProxy";
        remote.power_state = "Running";
        s.add(remote);
        Domain broken = remote;
        broken.name = "remote2";
        broken.uuid = "22222222-0000-0000-0000-000000000002";
        broken.transport_rpc.reset();
        s.add(broken);
        return s;
    }();
    Policy p = load_one("* * remote1 @anyvm allow\n* * @anyvm remote1 allow user=root\n"
                        "* * @anyvm remote2 allow\n* * work vault allow\n");
};

TEST_F(Remote, RequestedSourceBecomesSource) {
    Request r = req("work", "personal", "a.B");
    r.requested_source = "remote1";
    EXPECT_EQ(evaluate(p, sys, r).answer,
              lines({"user=DEFAULT", "result=allow", "target=personal",
                     "target_uuid=uuid:11111111-0000-0000-0000-000000000002", "autostart=True",
                     "requested_target=personal", "policy_source=remote1"}));
}

TEST_F(Remote, InvalidRequestedSource) {
    for (const char* rs : {"personal", "nonexistent", "remote1"}) {
        Request r = req(std::string(rs) == "remote1" ? "personal" : "work", "vault", "a.B");
        r.requested_source = rs;
        Decision d = evaluate(p, sys, r);
        EXPECT_EQ(d.answer, "result=deny") << rs;
        EXPECT_THAT(d.reason, HasSubstr("invalid requested source")) << rs;
        EXPECT_TRUE(d.notify);
    }
}

TEST_F(Remote, RemoteTarget) {
    EXPECT_EQ(evaluate(p, sys, req("personal", "remote1", "a.B+arg")).answer,
              lines({"user=DEFAULT", "result=allow", "target=work",
                     "target_uuid=uuid:11111111-0000-0000-0000-000000000001", "autostart=True",
                     "requested_target=remote1", "service=qubesair.SSHProxy+remote1+a.B+arg"}));
    EXPECT_EQ(evaluate(p, sys, req("personal", "remote2", "a.B")).answer, "result=deny");
}

// --- ask (§8) ---

class Ask : public ::testing::Test {
  protected:
    SystemInfo sys = [] {
        SystemInfo s = example_system();
        Domain internal;
        internal.name = "internal-vm";
        internal.uuid = "33333333-0000-0000-0000-000000000001";
        internal.internal = true;
        internal.power_state = "Running";
        s.add(internal);
        return s;
    }();
    std::vector<std::string> targets(const std::string& text, const std::string& source = "work",
                                     const std::string& target = "vault") {
        Policy p = load_one(text);
        EXPECT_TRUE(p.ok()) << *p.error;
        Decision d = evaluate(p, sys, req(source, target, "a.B"));
        if (d.outcome != Outcome::Ask) return {"<" + d.reason + ">"};
        return d.ask->targets;
    }
};

TEST_F(Ask, ChoiceListFromLaterRules) {
    EXPECT_EQ(targets("a.B * @anyvm vault ask\n"
                      "a.B * @anyvm personal allow\n"
                      "a.B * @anyvm @dispvm allow\n"
                      "a.B * untrusted dom0 allow\n" // source does not match
                      "c.D * @anyvm untrusted allow\n"),
              (std::vector<std::string>{"@dispvm:dvm-tpl", "personal", "vault"}));
}

TEST_F(Ask, EarlierDenyWins) {
    EXPECT_EQ(targets("a.B * @anyvm personal deny\n"
                      "a.B * @anyvm vault ask\n"
                      "a.B * @anyvm @anyvm allow\n"),
              (std::vector<std::string>{"@dispvm:dvm-tpl", "dvm-tpl", "untrusted", "vault"}));
}

TEST_F(Ask, StarAndAnyVm) {
    EXPECT_EQ(targets("a.B * @anyvm * ask\n"),
              (std::vector<std::string>{"@dispvm:dvm-tpl", "dom0", "dvm-tpl", "personal",
                                        "untrusted", "vault"}));
    EXPECT_EQ(
        targets("a.B * @anyvm @anyvm ask\n"),
        (std::vector<std::string>{"@dispvm:dvm-tpl", "dvm-tpl", "personal", "untrusted", "vault"}));
}

TEST_F(Ask, Expansions) {
    EXPECT_EQ(targets("a.B * @anyvm @tag:trusted ask\n", "personal", "work"),
              std::vector<std::string>{"work"});
    EXPECT_EQ(targets("a.B * @anyvm @type:AdminVM ask\n", "personal", "dom0"),
              std::vector<std::string>{"dom0"});
    EXPECT_EQ(targets("a.B * @anyvm @adminvm ask\n", "personal", "@adminvm"),
              std::vector<std::string>{"dom0"});
    EXPECT_EQ(targets("a.B * @anyvm @dispvm:dvm-tpl ask\n", "personal", "@dispvm:dvm-tpl"),
              std::vector<std::string>{"@dispvm:dvm-tpl"});
    EXPECT_EQ(targets("a.B * @anyvm * ask\na.B * @anyvm uuid:11111111-0000-0000-0000-000000000003 "
                      "deny\na.B * @anyvm uuid:11111111-0000-0000-0000-000000000003 allow\n",
                      "personal", "untrusted")
                  .size(),
              6u);
}

TEST_F(Ask, RedirectOnly) {
    EXPECT_EQ(targets("a.B * @anyvm @anyvm ask target=@adminvm\n"),
              std::vector<std::string>{"dom0"});
    // Errata 9: the target as written; @dispvm names no VM, so it cannot be offered
    // (errata 7).
    EXPECT_EQ(targets("a.B * @anyvm @anyvm ask target=@dispvm\n"),
              std::vector<std::string>{"<target @dispvm does not exist>"});
    EXPECT_EQ(targets("a.B * @anyvm @anyvm ask target=work\n"), std::vector<std::string>{"work"});
}

TEST_F(Ask, SourceAndInternalRemoved) {
    auto t = targets("a.B * @anyvm @anyvm ask\n", "personal");
    EXPECT_EQ(std::count(t.begin(), t.end(), "personal"), 0);
    EXPECT_EQ(std::count(t.begin(), t.end(), "internal-vm"), 0);
}

TEST_F(Ask, AutostartNoKeepsRunning) {
    EXPECT_EQ(targets("a.B * @anyvm * ask autostart=no\n"),
              (std::vector<std::string>{"dom0", "personal", "untrusted"}));
}

TEST_F(Ask, EmptyListDenies) {
    auto t = targets("a.B * @anyvm vault ask\na.B * @anyvm vault deny\n", "vault");
    ASSERT_EQ(t.size(), 1u);
    EXPECT_THAT(t[0], HasSubstr("no target is available"));
}

TEST_F(Ask, DefaultTarget) {
    Policy p = load_one("a.B * @anyvm @anyvm ask default_target=@dispvm\n"
                        "c.D * @anyvm @anyvm ask default_target=nonexistent\n"
                        "e.F * @anyvm * ask default_target=@adminvm\n");
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "a.B")).ask->default_target, "@dispvm:dvm-tpl");
    // Errata 7: a default_target= naming no VM fails closed.
    Decision missing = evaluate(p, sys, req("work", "vault", "c.D"));
    EXPECT_EQ(missing.answer, "result=deny");
    EXPECT_EQ(missing.reason, "default_target: target nonexistent does not exist");
    EXPECT_EQ(evaluate(p, sys, req("work", "vault", "e.F")).ask->default_target, "dom0");
}

TEST_F(Ask, AssumeYesNeedsIntendedInList) {
    Policy p = load_one("a.B * @anyvm * ask\n");
    Request r = req("work", "", "a.B");
    r.assume_yes_for_ask = true;
    EXPECT_EQ(evaluate(p, sys, r).answer, "result=deny");
    r.intended_target = "personal";
    EXPECT_THAT(evaluate(p, sys, r).answer, HasSubstr("target=personal"));
    r.just_evaluate = true;
    EXPECT_EQ(evaluate(p, sys, r).answer, "result=allow");
}

TEST_F(Ask, AnswerKeepsRuleParams) {
    Policy p = load_one("a.B * @anyvm * ask user=alice notify=yes\n");
    Decision d = evaluate(p, sys, req("work", "vault", "a.B"));
    Decision yes = answer_ask(d, sys, std::string("dom0"));
    EXPECT_EQ(yes.answer, lines({"user=alice", "result=allow", "target=dom0", "autostart=True",
                                 "requested_target=vault"}));
    EXPECT_TRUE(yes.notify);
    Decision disp = answer_ask(d, sys, std::string("@dispvm:dvm-tpl"));
    EXPECT_THAT(disp.answer, HasSubstr("target_uuid=@dispvm:uuid:"));
    Decision no = answer_ask(d, sys, std::nullopt);
    EXPECT_TRUE(no.notify);
}

// --- explain support ---

TEST_F(Example, TraceExplainsEarlierRules) {
    auto t = trace_rules(policy, sys, req("work", "personal", "qubes.Filecopy"));
    ASSERT_EQ(t.size(), 3u);
    EXPECT_EQ(t[0].mismatch, "source work does not match untrusted");
    EXPECT_EQ(t[1].mismatch, "target personal does not match vault");
    EXPECT_EQ(t[2].mismatch, "");
    auto t2 = trace_rules(policy, sys, req("work", "personal", "demo.Vault"));
    EXPECT_EQ(t2[0].mismatch, "service demo.Vault is not qubes.Filecopy");
    auto t3 = trace_rules(policy, sys, req("work", "@dispvm", "demo.Echo+x"));
    EXPECT_EQ(t3[3].mismatch, "argument +x is not +");
    EXPECT_EQ(t3[4].mismatch, "argument +x is not +hello");
}

} // namespace
