// Denials built outside the rule walk: no system information, refused or invalid ask
// answers, and allow rules whose target cannot be used at answer time.
#include "policy/engine.h"
#include "policy_fixture.h"

#include <gmock/gmock.h>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;
using ::testing::HasSubstr;

namespace {

TEST(Decision, WithoutSystemInfo) {
    Decision d = deny_without_system_info(req("work", "vault", "a.B+x"), "qubesd is down");
    EXPECT_EQ(d.outcome, Outcome::Deny);
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_EQ(d.reason, "cannot get system info: qubesd is down");
    EXPECT_EQ(d.service, "a.B");
    EXPECT_EQ(d.argument, "+x");
    EXPECT_EQ(d.source, "work");
    EXPECT_EQ(d.target, "vault");
    EXPECT_FALSE(d.notify);
    Decision bare = deny_without_system_info(req("work", "", "a.B"), "x");
    EXPECT_EQ(bare.argument, "+");
    EXPECT_EQ(bare.target, "");
}

TEST(Decision, AskAnswersOutsideTheChoicesAreRefused) {
    SystemInfo sys = example_system();
    Policy p = load_one("a.B * @anyvm vault ask notify=yes\n");
    Decision pending = evaluate(p, sys, req("work", "vault", "a.B"));
    ASSERT_EQ(pending.outcome, Outcome::Ask);
    Decision other = answer_ask(pending, sys, std::string("personal"));
    EXPECT_EQ(other.outcome, Outcome::Deny);
    EXPECT_EQ(other.reason, "target personal is not one of the allowed choices");
    EXPECT_TRUE(other.notify);
    EXPECT_FALSE(other.ask);
    Decision refused = answer_ask(pending, sys, std::nullopt);
    EXPECT_EQ(refused.reason, "denied by the user");
    EXPECT_TRUE(refused.notify);
    Decision yes = answer_ask(pending, sys, std::string("vault"));
    EXPECT_TRUE(yes.allowed());
    EXPECT_THAT(yes.reason, HasSubstr("allowed by the user to vault (/etc/qubes/policy.d/"));
}

// Errata 4 and 5: redirects are checked like intended targets, in every mode.
TEST(Decision, RedirectToAMissingTargetIsDeniedInEveryMode) {
    SystemInfo sys = example_system();
    Policy p = load_one("a.B * @anyvm @anyvm allow target=nosuch\n"
                        "c.D * @anyvm @anyvm allow target=@dispvm:nosuch\n");
    Decision d = evaluate(p, sys, req("work", "personal", "a.B"));
    EXPECT_EQ(d.answer, "result=deny");
    EXPECT_EQ(d.reason, "policy define 'allow' action at /etc/qubes/policy.d/10-test.policy:1 "
                        "but no target is specified by caller or policy");
    EXPECT_EQ(d.warnings,
              std::vector<std::string>{"target 'nosuch' does not exist, using @default instead"});
    EXPECT_TRUE(d.notify);
    Decision disp = evaluate(p, sys, req("work", "personal", "c.D"));
    EXPECT_EQ(disp.reason, "not a template for dispvm: nosuch");
    EXPECT_TRUE(disp.notify);

    Request quiet = req("work", "personal", "a.B");
    quiet.just_evaluate = true; // just_evaluate never notifies, but still resolves
    Decision q = evaluate(p, sys, quiet);
    EXPECT_EQ(q.answer, "result=deny");
    EXPECT_FALSE(q.notify);
}

} // namespace
