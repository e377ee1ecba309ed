#include "policy_fixture.h"

#include <gmock/gmock.h>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;
using ::testing::HasSubstr;

namespace {

std::string error_of(const std::string& text) {
    Policy p = load_one(text);
    EXPECT_FALSE(p.ok()) << "expected an error for: " << text;
    return p.error.value_or("");
}

TEST(Token, KindsAndValues) {
    std::string err;
    auto t = parse_token("work", Column::Source, &err);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->kind, TokenKind::Literal);
    EXPECT_EQ(parse_token("uuid:11111111-0000-0000-0000-000000000001", Column::Target, &err)->kind,
              TokenKind::Literal);
    EXPECT_EQ(parse_token("*", Column::Source, &err)->kind, TokenKind::Any);
    EXPECT_EQ(parse_token("@adminvm", Column::Source, &err)->kind, TokenKind::AdminVM);
    EXPECT_EQ(parse_token("@anyvm", Column::Target, &err)->kind, TokenKind::AnyVM);
    EXPECT_EQ(parse_token("@default", Column::Target, &err)->kind, TokenKind::Default);
    auto type = parse_token("@type:AppVM", Column::Source, &err);
    EXPECT_EQ(type->kind, TokenKind::Type);
    EXPECT_EQ(type->value, "AppVM");
    auto tag = parse_token("@tag:x", Column::Target, &err);
    EXPECT_EQ(tag->kind, TokenKind::Tag);
    EXPECT_EQ(tag->value, "x");
    EXPECT_EQ(parse_token("@dispvm", Column::Target, &err)->kind, TokenKind::DispVM);
    auto dt = parse_token("@dispvm:dvm-tpl", Column::Target, &err);
    EXPECT_EQ(dt->kind, TokenKind::DispVMTemplate);
    EXPECT_EQ(dt->value, "dvm-tpl");
    EXPECT_EQ(parse_token("@dispvm:uuid:abc", Column::Target, &err)->kind,
              TokenKind::DispVMTemplate);
    auto dtag = parse_token("@dispvm:@tag:t", Column::Source, &err);
    EXPECT_EQ(dtag->kind, TokenKind::DispVMTag);
    EXPECT_EQ(dtag->value, "t");
}

struct ColumnCase {
    const char* token;
    bool source, target, redirect, intended;
};

TEST(Token, ColumnTable) {
    // POLICY.md §3 table.
    const ColumnCase cases[] = {
        {"work", true, true, true, true},
        {"uuid:1234", true, true, true, true},
        {"*", true, true, false, false},
        {"@adminvm", true, true, true, true},
        {"@anyvm", true, true, false, false},
        {"@default", false, true, false, true},
        {"@type:AppVM", true, true, false, false},
        {"@tag:t", true, true, false, false},
        {"@dispvm", false, true, true, true},
        {"@dispvm:dvm", true, true, true, true},
        {"@dispvm:@tag:t", true, true, false, false},
    };
    for (const auto& c : cases) {
        std::string err;
        EXPECT_EQ(parse_token(c.token, Column::Source, &err).has_value(), c.source) << c.token;
        EXPECT_EQ(parse_token(c.token, Column::Target, &err).has_value(), c.target) << c.token;
        EXPECT_EQ(parse_token(c.token, Column::Redirect, &err).has_value(), c.redirect) << c.token;
        EXPECT_EQ(parse_token(c.token, Column::IntendedTarget, &err).has_value(), c.intended)
            << c.token;
    }
}

TEST(Token, Errors) {
    std::string err;
    EXPECT_FALSE(parse_token("@tag:", Column::Source, &err));
    EXPECT_EQ(err, "invalid empty @tag: token: '@tag:'");
    EXPECT_FALSE(parse_token("@type:", Column::Source, &err));
    EXPECT_EQ(err, "invalid empty @type: token: '@type:'");
    EXPECT_FALSE(parse_token("@dispvm:", Column::Target, &err));
    EXPECT_EQ(err, "invalid empty @dispvm: token: '@dispvm:'");
    EXPECT_FALSE(parse_token("@dispvm:@tag:", Column::Target, &err));
    EXPECT_EQ(err, "invalid empty @dispvm:@tag: token: '@dispvm:@tag:'");
    EXPECT_FALSE(parse_token("@foo", Column::Source, &err));
    EXPECT_EQ(err, "invalid source token: '@foo'");
    EXPECT_FALSE(parse_token("@dispvm:@type:x", Column::Target, &err));
    EXPECT_EQ(err, "invalid target token: '@dispvm:@type:x'");
    EXPECT_FALSE(parse_token("@default", Column::Source, &err));
    EXPECT_EQ(err, "invalid source token: '@default' is not allowed in this column");
    EXPECT_FALSE(parse_token("@anyvm", Column::Redirect, &err));
    EXPECT_EQ(err, "invalid redirect token: '@anyvm' is not allowed in this column");
    EXPECT_FALSE(parse_token("@tag:x", Column::IntendedTarget, &err));
    EXPECT_EQ(err, "invalid intended target token: '@tag:x' is not allowed in this column");
}

TEST(Parser, RuleFieldsAndParams) {
    Policy p = load_one("# comment\n\n  \n"
                        "qubes.Foo +bar work @dispvm:dvm ask target=@dispvm:dvm user=u "
                        "notify=yes autostart=no\n"
                        "qubes.Foo * @anyvm @default ask default_target=work\n"
                        "* * @anyvm @anyvm deny notify=no\n");
    ASSERT_TRUE(p.ok()) << *p.error;
    ASSERT_EQ(p.rules.size(), 3u);
    const Rule& r = p.rules[0];
    EXPECT_EQ(r.service, "qubes.Foo");
    EXPECT_EQ(r.argument, "+bar");
    EXPECT_EQ(r.source.text, "work");
    EXPECT_EQ(r.target.kind, TokenKind::DispVMTemplate);
    EXPECT_EQ(r.action, ActionKind::Ask);
    EXPECT_EQ(r.redirect->text, "@dispvm:dvm");
    EXPECT_EQ(*r.user, "u");
    EXPECT_EQ(r.notify, true);
    EXPECT_EQ(r.autostart, false);
    EXPECT_EQ(r.where.str(), "/etc/qubes/policy.d/10-test.policy:4");
    EXPECT_EQ(p.rules[1].default_target->text, "work");
    EXPECT_EQ(p.rules[2].notify, false);
}

TEST(Parser, TabsAndCrLf) {
    Policy p = load_one("a.B\t+\twork\tvault\tallow\r\nc.D * work vault deny\r");
    ASSERT_TRUE(p.ok()) << *p.error;
    ASSERT_EQ(p.rules.size(), 2u);
    EXPECT_EQ(p.rules[1].where.line, 2);
}

TEST(ParserErrors, TooFewFields) {
    EXPECT_EQ(error_of("ok.Svc * @anyvm @anyvm deny\nqubes.Foo * @anyvm @anyvm\n"),
              "/etc/qubes/policy.d/10-test.policy:2: wrong number of fields: expected at "
              "least 5 (service, argument, source, target, action), got 4");
}

TEST(ParserErrors, InlineCommentIsParameter) {
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm deny # no\n"),
                HasSubstr("10-test.policy:1: invalid action parameter syntax: '#'"));
}

TEST(ParserErrors, InlineCommentLookingLikeParam) {
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm deny #x=y\n"),
                HasSubstr(":1: invalid parameter '#x' for action deny"));
}

TEST(ParserErrors, Service) {
    EXPECT_THAT(error_of("qubes+Foo * @anyvm @anyvm deny\n"),
                HasSubstr(":1: invalid service name: 'qubes+Foo'"));
    EXPECT_THAT(error_of("qubes/Foo * @anyvm @anyvm deny\n"),
                HasSubstr(":1: invalid service name: 'qubes/Foo'"));
}

TEST(ParserErrors, Argument) {
    EXPECT_THAT(error_of("qubes.Foo bar @anyvm @anyvm deny\n"),
                HasSubstr(":1: invalid argument: 'bar' (must be * or start with +)"));
    EXPECT_THAT(error_of("qubes.Foo +a/b @anyvm @anyvm deny\n"),
                HasSubstr(":1: invalid argument: '+a/b'"));
    EXPECT_THAT(error_of("* +arg @anyvm @anyvm deny\n"),
                HasSubstr(":1: only * argument allowed for * service"));
}

TEST(ParserErrors, Action) {
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm permit\n"),
                HasSubstr(":1: invalid action: 'permit'"));
}

TEST(ParserErrors, Params) {
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow user=a user=b\n"),
                HasSubstr(":1: parameter given twice: 'user'"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow notify=true\n"),
                HasSubstr(":1: 'notify' is 'true', but can be only 'yes' or 'no'"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow autostart=\n"),
                HasSubstr(":1: 'autostart' is '', but can be only 'yes' or 'no'"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm deny target=work\n"),
                HasSubstr(":1: invalid parameter 'target' for action deny"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow default_target=work\n"),
                HasSubstr(":1: invalid parameter 'default_target' for action allow"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm deny user=x\n"),
                HasSubstr(":1: invalid parameter 'user' for action deny"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow target=@anyvm\n"),
                HasSubstr(":1: invalid redirect token: '@anyvm' is not allowed in this column"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm ask default_target=@tag:x\n"),
                HasSubstr(":1: invalid redirect token: '@tag:x'"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @anyvm allow target=\n"),
                HasSubstr(":1: empty value for target="));
}

TEST(ParserErrors, Tokens) {
    EXPECT_THAT(error_of("qubes.Foo * @default @anyvm deny\n"),
                HasSubstr(":1: invalid source token: '@default' is not allowed"));
    EXPECT_THAT(error_of("qubes.Foo * @dispvm @anyvm deny\n"),
                HasSubstr(":1: invalid source token: '@dispvm' is not allowed"));
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @bogus deny\n"),
                HasSubstr(":1: invalid target token: '@bogus'"));
    EXPECT_THAT(error_of("qubes.Foo * @tag: @anyvm deny\n"),
                HasSubstr(":1: invalid empty @tag: token: '@tag:'"));
}

TEST(ParserErrors, DefaultTargetNeedsRedirect) {
    EXPECT_THAT(error_of("qubes.Foo * @anyvm @default allow\n"),
                HasSubstr(":1: allow action for @default rule must specify target= option"));
    // ask may leave it to the user.
    EXPECT_TRUE(load_one("qubes.Foo * @anyvm @default ask\n").ok());
}

TEST(ParserErrors, Directives) {
    EXPECT_THAT(error_of("!bogus x\n"), HasSubstr(":1: invalid directive: '!bogus'"));
    EXPECT_THAT(error_of("!include\n"),
                HasSubstr(":1: invalid number of params to !include (expected 1, got 0)"));
    EXPECT_THAT(error_of("!include a b\n"),
                HasSubstr(":1: invalid number of params to !include (expected 1, got 2)"));
    EXPECT_THAT(error_of("!include-dir\n"), HasSubstr(":1: invalid number of params to "
                                                      "!include-dir"));
    EXPECT_THAT(error_of("!include-service a.B * \n"),
                HasSubstr(":1: invalid number of params to !include-service (expected 3, got 2)"));
    EXPECT_THAT(error_of("!compat-4.0 x\n"),
                HasSubstr(":1: invalid number of params to !compat-4.0 (expected 0, got 1)"));
    EXPECT_THAT(error_of("!include missing\n"),
                HasSubstr(":1: not a file: /etc/qubes/policy.d/missing"));
    EXPECT_THAT(error_of("!include-dir missing\n"),
                HasSubstr(":1: not a directory: /etc/qubes/policy.d/missing"));
    EXPECT_THAT(error_of("!include-service a.B * missing\n"),
                HasSubstr(":1: not a file: /etc/qubes/policy.d/missing"));
    EXPECT_THAT(error_of("!include-service a+B * x\n"), HasSubstr(":1: invalid service name"));
}

TEST(Files, NamingFilterAndOrder) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-b.policy", "b.B * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/20-a.policy", "a.A * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/README", "garbage\n");
    loader.add_file("/etc/qubes/policy.d/.hidden.policy", "garbage\n");
    loader.add_file("/etc/qubes/policy.d/30-x.policy.swp", "garbage\n");
    loader.add_dir("/etc/qubes/policy.d/include");
    loader.add_dir("/etc/qubes/policy.d/dir.policy"); // not a regular file
    loader.add_file("/run/qubes/policy.d/30-c.policy", "c.C * @anyvm @anyvm deny\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    ASSERT_EQ(p.rules.size(), 3u);
    EXPECT_EQ(p.rules[0].service, "a.A");
    EXPECT_EQ(p.rules[1].service, "c.C");
    EXPECT_EQ(p.rules[2].service, "b.B");
}

TEST(Files, RunDirHidesEtc) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "etc.X * @anyvm @anyvm deny\n");
    loader.add_file("/run/qubes/policy.d/50-x.policy", "run.X * @anyvm @anyvm deny\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p.rules.size(), 1u);
    EXPECT_EQ(p.rules[0].service, "run.X");
    EXPECT_EQ(p.rules[0].where.file, "/run/qubes/policy.d/50-x.policy");
}

TEST(Files, ByteOrderSort) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/a.policy", "a.A * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/_.policy", "u.U * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/-.policy", "m.M * @anyvm @anyvm deny\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.rules[0].service, "m.M"); // '-' 0x2d < '_' 0x5f < 'a'
    EXPECT_EQ(p.rules[1].service, "u.U");
    EXPECT_EQ(p.rules[2].service, "a.A");
}

TEST(Files, InvalidNameFailsWholePolicy) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-ok.policy", "a.A * @anyvm @anyvm allow\n");
    loader.add_file("/etc/qubes/policy.d/20-Bad.policy", "a.A * @anyvm @anyvm allow\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(*p.error, "invalid policy file name /etc/qubes/policy.d/20-Bad.policy (allowed "
                        "characters: [0-9a-z_.-])");
    EXPECT_TRUE(p.rules.empty());
}

TEST(Files, MissingDirectoryIsError) {
    MemoryLoader loader;
    loader.add_dir(kEtcDir);
    Policy p = load_policy(loader, default_paths());
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(*p.error, "policy directory /run/qubes/policy.d does not exist or is not a "
                        "directory");
}

TEST(Files, ErrorInLaterFileDropsAllRules) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-ok.policy", "a.A * @anyvm @anyvm allow\n");
    loader.add_file("/etc/qubes/policy.d/90-bad.policy", "\n\nbroken\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_FALSE(p.ok());
    EXPECT_THAT(*p.error, HasSubstr("/etc/qubes/policy.d/90-bad.policy:3: wrong number of "
                                    "fields"));
    EXPECT_EQ(p.error_location->line, 3);
    EXPECT_TRUE(p.rules.empty());
}

TEST(Include, RelativeToTopLevelDir) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy",
                    "first.A * @anyvm @anyvm deny\n!include include/a\nlast.A * @anyvm @anyvm "
                    "deny\n");
    loader.add_file("/etc/qubes/policy.d/include/a", "inc.A * @anyvm @anyvm deny\n"
                                                     "!include include/b\n");
    loader.add_file("/etc/qubes/policy.d/include/b", "inc.B * @anyvm @anyvm deny\n");
    loader.add_file("/abs/c", "abs.C * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/60-y.policy", "!include /abs/c\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    std::vector<std::string> services;
    for (const auto& r : p.rules)
        services.push_back(r.service);
    EXPECT_EQ(services, (std::vector<std::string>{"first.A", "inc.A", "inc.B", "last.A", "abs.C"}));
    EXPECT_EQ(p.rules[2].where.str(), "/etc/qubes/policy.d/include/b:1");
}

TEST(Include, ErrorInIncludedFileNamesThatFile) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "!include inc\n");
    loader.add_file("/etc/qubes/policy.d/inc", "\nbad line\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_THAT(*p.error, HasSubstr("/etc/qubes/policy.d/inc:2: wrong number of fields"));
}

TEST(Include, LoopIsAnErrorNotACrash) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "!include loop\n");
    loader.add_file("/etc/qubes/policy.d/loop", "!include loop\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_THAT(*p.error, HasSubstr("includes nested too deeply"));
}

TEST(Include, Dir) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "!include-dir extra\n");
    loader.add_file("/etc/qubes/policy.d/extra/b.policy", "b.B * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/extra/a.policy", "a.A * @anyvm @anyvm deny\n");
    loader.add_file("/etc/qubes/policy.d/extra/notes.txt", "garbage\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    ASSERT_EQ(p.rules.size(), 2u);
    EXPECT_EQ(p.rules[0].service, "a.A");
    EXPECT_EQ(p.rules[1].service, "b.B");
}

TEST(Include, DirWithBadName) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "!include-dir extra\n");
    loader.add_file("/etc/qubes/policy.d/extra/B.policy", "b.B * @anyvm @anyvm deny\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_THAT(*p.error, HasSubstr("50-x.policy:1: invalid policy file name "
                                    "/etc/qubes/policy.d/extra/B.policy"));
}

TEST(Include, ServiceLegacySyntax) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/50-x.policy", "!include-service qubes.Gpg +sign gpg\n");
    loader.add_file("/etc/qubes/policy.d/gpg", "# legacy\n$tag:gpg-users vault allow,user=user\n"
                                               "$anyvm $anyvm ask,default_target=$dispvm\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    ASSERT_EQ(p.rules.size(), 2u);
    EXPECT_EQ(format_rule(p.rules[0]), "qubes.Gpg\t+sign\t@tag:gpg-users\tvault\tallow user=user");
    EXPECT_EQ(format_rule(p.rules[1]),
              "qubes.Gpg\t+sign\t@anyvm\t@anyvm\task default_target=@dispvm");
    EXPECT_EQ(p.rules[1].where.str(), "/etc/qubes/policy.d/gpg:3");
}

TEST(Legacy, Errors) {
    MemoryLoader loader = base_loader();
    EXPECT_THROW(parse_legacy_text(loader, "work vault\n", "/x", "a.B", "*", "/"),
                 PolicySyntaxError);
    try {
        parse_legacy_text(loader, "\n$include-dir:x\n", "/x", "a.B", "*", "/");
        FAIL();
    } catch (const PolicySyntaxError& e) {
        EXPECT_STREQ(e.what(), "/x:2: wrong number of fields: expected at least 3 (source, "
                               "target, action), got 1");
    }
    try {
        parse_legacy_text(loader, "!include-dir x\n", "/x", "a.B", "*", "/");
        FAIL();
    } catch (const PolicySyntaxError& e) {
        EXPECT_STREQ(e.what(), "/x:1: invalid directive '!include-dir' in legacy policy file");
    }
}

TEST(Legacy, IncludeRelativeToBase) {
    MemoryLoader loader = base_loader();
    loader.add_file("/base/other", "work vault deny\n");
    auto rules = parse_legacy_text(loader, "$include:other\n@anyvm @anyvm allow\n", "/base/x",
                                   "a.B", "*", "/base");
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_EQ(rules[0].where.str(), "/base/other:1");
}

TEST(Compat40, Example) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/35-compat.policy", "!compat-4.0\n");
    loader.add_file("/etc/qubes/policy.d/90-default.policy", "qubes.Gpg * @anyvm @anyvm allow\n");
    loader.add_file("/etc/qubes-rpc/policy/qubes.Gpg+sign",
                    "$tag:gpg-users  vault  allow,user=user\n");
    loader.add_file("/etc/qubes-rpc/policy/qubes.Gpg", "work vault allow\n");
    loader.add_file("/etc/qubes-rpc/policy/qubes.Gpg+a", "work vault deny\n");
    loader.add_file("/etc/qubes-rpc/policy/qubes.Gpg+sign.rpmnew", "garbage\n");
    loader.add_file("/etc/qubes-rpc/policy/.hidden", "garbage\n");
    loader.add_file("/etc/qubes-rpc/policy/bad name", "garbage\n");
    loader.add_file("/etc/qubes-rpc/policy/aaa.Svc", "work vault allow\n");
    loader.add_dir("/etc/qubes-rpc/policy/include");
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    std::vector<std::string> rules;
    for (const auto& r : p.rules)
        rules.push_back(format_rule(r));
    EXPECT_EQ(rules, (std::vector<std::string>{
                         "aaa.Svc\t*\twork\tvault\tallow",
                         "qubes.Gpg\t+a\twork\tvault\tdeny",
                         "qubes.Gpg\t+a\t@anyvm\t@anyvm\tdeny",
                         "qubes.Gpg\t+a\t@anyvm\t@adminvm\tdeny",
                         "qubes.Gpg\t+sign\t@tag:gpg-users\tvault\tallow user=user",
                         "qubes.Gpg\t+sign\t@anyvm\t@anyvm\tdeny",
                         "qubes.Gpg\t+sign\t@anyvm\t@adminvm\tdeny",
                         "qubes.Gpg\t*\twork\tvault\tallow",
                         "qubes.Gpg\t*\t@anyvm\t@anyvm\tallow",
                     }));
    ASSERT_EQ(p.warnings.size(), 1u);
    EXPECT_THAT(p.warnings[0], HasSubstr("35-compat.policy:1: !compat-4.0 is deprecated"));
}

TEST(Compat40, NotRecursive) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/35-compat.policy", "!include inc\n");
    loader.add_file("/etc/qubes/policy.d/inc", "!compat-4.0\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_THAT(*p.error, HasSubstr("/etc/qubes/policy.d/inc:1: !compat-4.0 is not recursive"));
}

TEST(Compat40, LegacyErrorHasLegacyLocation) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/35-compat.policy", "!compat-4.0\n");
    loader.add_file("/etc/qubes-rpc/policy/qubes.X", "work vault maybe\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_EQ(*p.error, "/etc/qubes-rpc/policy/qubes.X:1: invalid action: 'maybe'");
}

TEST(Paths, FromEnv) {
    ::setenv("QREXEC_POLICY_DIR", "/a:/b", 1);
    ::setenv("QREXEC_LEGACY_POLICY_DIR", "/legacy", 1);
    PolicyPaths p = PolicyPaths::from_env();
    EXPECT_EQ(p.dirs, (std::vector<std::string>{"/a", "/b"}));
    EXPECT_EQ(p.legacy_dir, "/legacy");
    ::unsetenv("QREXEC_POLICY_DIR");
    ::unsetenv("QREXEC_LEGACY_POLICY_DIR");
    p = PolicyPaths::from_env();
    EXPECT_EQ(p.dirs, PolicyPaths::default_dirs());
    EXPECT_EQ(p.legacy_dir, "/etc/qubes-rpc/policy");
}

TEST(SystemInfoJson, Parse) {
    SystemInfo s = example_system();
    ASSERT_TRUE(s.find("work"));
    EXPECT_EQ(s.find("uuid:11111111-0000-0000-0000-000000000001"), s.find("work"));
    EXPECT_EQ(s.find("@adminvm"), nullptr);
    EXPECT_TRUE(s.find("work")->has_tag("trusted"));
    EXPECT_TRUE(s.find("dvm-tpl")->template_for_dispvms);
    EXPECT_FALSE(s.find("vault")->default_dispvm);
}

TEST(SystemInfoJson, Errors) {
    std::string err;
    EXPECT_FALSE(parse_system_info("not json", &err));
    EXPECT_THAT(err, HasSubstr("invalid system info"));
    EXPECT_FALSE(parse_system_info("{}", &err));
    EXPECT_THAT(err, HasSubstr("missing 'domains' object"));
    EXPECT_FALSE(parse_system_info(R"({"domains": {"a": {"tags": "x"}}})", &err));
    EXPECT_THAT(err, HasSubstr("tags of 'a' is not a list"));
    EXPECT_FALSE(parse_system_info(R"({"domains": {"a": {"uuid": 5}}})", &err));
    EXPECT_THAT(err, HasSubstr("field 'uuid' is not a string"));
    EXPECT_FALSE(parse_system_info(R"({"domains": {"a": {"template_for_dispvms": "yes"}}})", &err));
    EXPECT_THAT(err, HasSubstr("field 'template_for_dispvms' is not a boolean"));
}

} // namespace
