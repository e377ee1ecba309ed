#include "../policy/policy_fixture.h"
#include "policy/tools.h"
#include "policy_server/request.h"

#include <gmock/gmock.h>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;
using ::testing::HasSubstr;

namespace {

std::string bad(std::string_view data) {
    std::string err;
    EXPECT_FALSE(parse_socket_request(data, &err)) << data;
    return err;
}

TEST(SocketRequest, Full) {
    auto r = parse_socket_request("source=work\nrequested_source=\nintended_target=vault\n"
                                  "service_and_arg=a.B+c\nassume_yes_for_ask=yes\n"
                                  "just_evaluate=no\n\nignored after the end");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->source, "work");
    EXPECT_EQ(r->requested_source, "");
    EXPECT_EQ(r->intended_target, "vault");
    EXPECT_EQ(r->service_and_arg, "a.B+c");
    EXPECT_TRUE(r->assume_yes_for_ask);
    EXPECT_FALSE(r->just_evaluate);
}

TEST(SocketRequest, ValueMaySplitOnlyAtFirstEquals) {
    auto r = parse_socket_request("source=a=b\nintended_target=\nservice_and_arg=x\n\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->source, "a=b");
    EXPECT_EQ(r->intended_target, "");
}

TEST(SocketRequest, EofEndsRequest) {
    EXPECT_TRUE(parse_socket_request("source=a\nintended_target=b\nservice_and_arg=x"));
    EXPECT_TRUE(parse_socket_request("source=a\nintended_target=b\nservice_and_arg=x\n"));
}

TEST(SocketRequest, Errors) {
    EXPECT_EQ(bad("source=a\nintended_target=b\n\n"), "missing required key(s): service_and_arg");
    EXPECT_EQ(bad("\n"), "missing required key(s): source intended_target service_and_arg");
    EXPECT_EQ(bad("source=a\nbogus=1\n"), "unknown key 'bogus'");
    EXPECT_EQ(bad("domain_id=1\n"), "unknown key 'domain_id'");
    EXPECT_EQ(bad("source=a\nsource=b\n"), "duplicate key 'source'");
    EXPECT_EQ(bad("just_evaluate=True\n"), "bad boolean for 'just_evaluate': must be yes or no");
    EXPECT_EQ(bad("assume_yes_for_ask=\n"),
              "bad boolean for 'assume_yes_for_ask': must be yes or no");
    EXPECT_EQ(bad("source\n"), "line without '='");
    EXPECT_EQ(bad("source=w\xc3\xb6rk\n"), "non-ASCII data");
    EXPECT_EQ(bad(std::string(kMaxSocketRequest + 1, 'x')), "request too long");
}

TEST(SocketRequest, Incremental) {
    SocketRequestParser p;
    EXPECT_EQ(p.feed("sour"), SocketRequestParser::State::NeedMore);
    EXPECT_EQ(p.feed("ce=a\nintended_target=b\nservice_and_arg=c\n"),
              SocketRequestParser::State::NeedMore);
    EXPECT_EQ(p.feed("\n"), SocketRequestParser::State::Complete);
    EXPECT_EQ(p.request().source, "a");
}

TEST(EvalRequest, Valid) {
    using namespace std::string_literals;
    auto r = parse_eval_request("policy.EvalSimple+qubes.Foo+bar sys-gui keyword adminvm\0"
                                "work\0@dispvm"s,
                                "policy.EvalSimple");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->service_queried, "qubes.Foo+bar");
    EXPECT_EQ(r->caller, "sys-gui");
    EXPECT_EQ(r->source, "work");
    EXPECT_EQ(r->target, "@dispvm");
}

TEST(EvalRequest, Errors) {
    using namespace std::string_literals;
    std::string err;
    auto check = [&](std::string data, const char* what) {
        EXPECT_FALSE(parse_eval_request(data, "policy.EvalSimple", &err)) << data;
        EXPECT_EQ(err, what);
    };
    check("policy.EvalSimple+a.B dom0", "no service header");
    check("policy.EvalSimple+a.B\0a\0b"s, "service header without caller");
    check("policy.EvalGUI+a.B dom0\0a\0b"s, "unexpected service policy.EvalGUI+a.B");
    check("policy.EvalSimple+ dom0\0a\0b"s, "missing service argument");
    check("policy.EvalSimple++a dom0\0a\0b"s, "service argument must not start with '+'");
    check("policy.EvalSimple+a.B dom0\0ab"s, "body is not source\\0target");
    check("policy.EvalSimple+a.B dom0\0\0b"s, "bad source length");
    check("policy.EvalSimple+a.B dom0\0"s + std::string(32, 'a') + "\0b"s, "bad source length");
    check("policy.EvalSimple+a.B dom0\0a\0"s + std::string(64, 'b'), "bad target length");
    check("policy.EvalSimple+a.B dom0\0a\0b:c"s, "invalid character in source or target");
    check("policy.EvalSimple+a.B dom0\0a\0b\0"s, "invalid character in source or target");
}

// --- tools ---

TEST(Lint, CollectsEveryError) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy",
                    "bad\nqubes.Foo * @anyvm @anyvm allow\nqubes.Foo * @tag: @anyvm allow\n");
    loader.add_file("/etc/qubes/policy.d/20-B.policy", "x\n");
    loader.add_file("/etc/qubes/policy.d/30-c.policy", "!include nope\n");
    auto report = lint_policy(loader, default_paths());
    ASSERT_EQ(report.errors.size(), 4u);
    EXPECT_THAT(report.errors[0].what(), HasSubstr("20-B.policy (allowed characters"));
    EXPECT_EQ(report.errors[1].where()->str(), "/etc/qubes/policy.d/10-a.policy:1");
    EXPECT_EQ(report.errors[2].where()->str(), "/etc/qubes/policy.d/10-a.policy:3");
    EXPECT_EQ(report.errors[3].where()->str(), "/etc/qubes/policy.d/30-c.policy:1");
    EXPECT_EQ(report.rules.size(), 1u);
}

TEST(Lint, ShadowedRules) {
    Policy p = load_one("a.B * @anyvm @anyvm deny\n"
                        "a.B +x work vault allow\n"
                        "a.B * @anyvm dom0 allow\n"
                        "* * * * deny\n"
                        "c.D * work vault allow\n");
    auto w = shadowed_rule_warnings(p.rules);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0], "/etc/qubes/policy.d/10-test.policy:2: warning: rule can never match: "
                    "/etc/qubes/policy.d/10-test.policy:1 matches everything it does");
    EXPECT_THAT(w[1], HasSubstr("10-test.policy:5: warning"));
}

TEST(Explain, NamesDecidingRuleAndEarlierMismatches) {
    SystemInfo sys = example_system();
    Policy p = load_one(kDemoPolicy, "10-demo.policy");
    std::string text = explain_text(p, sys, req("work", "vault", "demo.Vault"));
    EXPECT_THAT(text, HasSubstr("10-demo.policy:1: qubes.Filecopy"));
    EXPECT_THAT(text, HasSubstr("no match: service demo.Vault is not qubes.Filecopy"));
    EXPECT_THAT(text,
                HasSubstr("decision: deny\ndecided by: /etc/qubes/policy.d/10-demo.policy:7"));
    EXPECT_THAT(text, HasSubstr("not running and autostart=no"));
    std::string ask = explain_text(p, sys, req("personal", "vault", "qubes.Filecopy"));
    EXPECT_THAT(ask, HasSubstr("decision: ask\n"));
    EXPECT_THAT(ask, HasSubstr("choices: vault\ndefault target: vault\n"));
    std::string broken = explain_text(load_one("x\n"), sys, req("a", "b", "c"));
    EXPECT_THAT(broken, HasSubstr("10-test.policy:1: wrong number of fields"));
}

TEST(Graph, Edges) {
    SystemInfo sys = example_system();
    Policy p = load_one(kDemoPolicy, "10-demo.policy");
    GraphOptions opts;
    opts.services = {"qubes.Filecopy"};
    opts.sources = {"work", "personal"};
    std::string dot = policy_graph_dot(p, sys, opts);
    EXPECT_THAT(dot, HasSubstr("\"work\" -> \"personal\" [label=\"qubes.Filecopy\"];"));
    EXPECT_THAT(dot, HasSubstr("\"personal\" -> \"vault\" [label=\"qubes.Filecopy\", "
                               "style=dashed];"));
    EXPECT_THAT(dot, ::testing::Not(HasSubstr("\"personal\" -> \"work\"")));
    opts.include_ask = false;
    EXPECT_THAT(policy_graph_dot(p, sys, opts), ::testing::Not(HasSubstr("dashed")));
}

} // namespace
