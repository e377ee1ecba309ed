#include "services/command.h"

#include <gtest/gtest.h>

using namespace qrexec::services;

namespace {
ParsedCommand parse_ok(std::string_view text, bool with_user = true) {
    std::string error;
    auto parsed = parse_command(text, with_user, &error);
    EXPECT_TRUE(parsed.has_value()) << text << ": " << error;
    return parsed.value_or(ParsedCommand{});
}
bool parse_fails(std::string_view text, bool with_user = true) {
    std::string error;
    bool failed = !parse_command(text, with_user, &error).has_value();
    if (failed) {
        EXPECT_FALSE(error.empty()) << text;
    }
    return failed;
}
} // namespace

TEST(Command, UserSplitAtFirstColon) {
    auto c = parse_ok("user:echo a:b");
    EXPECT_EQ(c.username, "user");
    EXPECT_EQ(c.command, "echo a:b");
    EXPECT_FALSE(c.is_service);
    EXPECT_FALSE(c.nogui);
}

TEST(Command, NoColonIsAnError) {
    EXPECT_TRUE(parse_fails("echo hello"));
}

TEST(Command, WithoutUserKeepsWholeText) {
    auto c = parse_ok("echo a:b", false);
    EXPECT_EQ(c.username, "");
    EXPECT_EQ(c.command, "echo a:b");
}

TEST(Command, NoguiPrefixStripped) {
    auto c = parse_ok("root:nogui:QUBESRPC qubes.Foo+bar work");
    EXPECT_TRUE(c.nogui);
    EXPECT_TRUE(c.is_service);
    EXPECT_EQ(c.command, "QUBESRPC qubes.Foo+bar work");
    auto shell = parse_ok("root:nogui:ls");
    EXPECT_TRUE(shell.nogui);
    EXPECT_EQ(shell.command, "ls");
    auto dom0 = parse_ok("nogui:QUBESRPC a b", false);
    EXPECT_TRUE(dom0.nogui);
    EXPECT_TRUE(dom0.is_service);
}

TEST(Command, ServiceWithArgument) {
    auto c = parse_ok("user:QUBESRPC qubes.Foo+bar work");
    EXPECT_TRUE(c.is_service);
    EXPECT_EQ(c.descriptor, "qubes.Foo+bar");
    EXPECT_EQ(c.service_name, "qubes.Foo");
    ASSERT_TRUE(c.argument.has_value());
    EXPECT_EQ(*c.argument, "bar");
    EXPECT_EQ(c.lookup_descriptor, "qubes.Foo+bar");
    EXPECT_EQ(c.source_domain, "work");
    EXPECT_EQ(c.service_header, "qubes.Foo+bar work");
}

TEST(Command, ServiceWithoutPlusGetsLookupPlus) {
    auto c = parse_ok("user:QUBESRPC qubes.Foo work");
    EXPECT_EQ(c.descriptor, "qubes.Foo");
    EXPECT_FALSE(c.argument.has_value());
    EXPECT_EQ(c.lookup_descriptor, "qubes.Foo+");
    EXPECT_EQ(c.service_header, "qubes.Foo work"); // header not normalised
}

TEST(Command, EmptyArgumentAndExtraPlus) {
    auto empty = parse_ok("u:QUBESRPC svc+ src");
    ASSERT_TRUE(empty.argument.has_value());
    EXPECT_EQ(*empty.argument, "");
    EXPECT_EQ(empty.lookup_descriptor, "svc+");
    auto multi = parse_ok("u:QUBESRPC svc+a+b src");
    EXPECT_EQ(multi.service_name, "svc");
    EXPECT_EQ(*multi.argument, "a+b");
}

TEST(Command, FourTokenForm) {
    auto c = parse_ok("QUBESRPC qubes.Foo+bar work keyword adminvm", false);
    EXPECT_EQ(c.source_domain, "work");
    EXPECT_EQ(c.service_header, "qubes.Foo+bar work keyword adminvm");
    auto target = requested_target(c);
    ASSERT_TRUE(target.has_value());
    EXPECT_EQ(target->type, "keyword");
    EXPECT_EQ(target->target, "adminvm");
    EXPECT_TRUE(has_valid_token_count(c));
}

TEST(Command, QubesRpcWithoutSpaceIsError) {
    EXPECT_TRUE(parse_fails("u:QUBESRPCx a b"));
    EXPECT_TRUE(parse_fails("u:QUBESRPC"));
}

TEST(Command, DescriptorErrors) {
    EXPECT_TRUE(parse_fails("u:QUBESRPC svc"));      // no space after descriptor
    EXPECT_TRUE(parse_fails("u:QUBESRPC  src"));     // empty descriptor
    EXPECT_TRUE(parse_fails("u:QUBESRPC +arg src")); // empty service
    EXPECT_TRUE(parse_fails("u:QUBESRPC svc "));     // empty source
    EXPECT_TRUE(parse_fails("u:QUBESRPC svc  src")); // empty source (double space)
}

TEST(Command, LengthLimits) {
    std::string name255(255, 'a');
    EXPECT_FALSE(parse_fails("u:QUBESRPC " + name255 + " src"));
    EXPECT_TRUE(parse_fails("u:QUBESRPC " + name255 + "a src"));
    // Long arguments are fine up to a 65000-byte descriptor.
    std::string desc = "svc+" + std::string(65000 - 4, 'x');
    EXPECT_FALSE(parse_fails("u:QUBESRPC " + desc + " src"));
    EXPECT_TRUE(parse_fails("u:QUBESRPC " + desc + "x src"));
}

TEST(Command, LaterTokensNotValidatedAtParse) {
    auto c = parse_ok("u:QUBESRPC svc src a b c");
    EXPECT_FALSE(has_valid_token_count(c));
    auto three = parse_ok("u:QUBESRPC svc src a");
    EXPECT_FALSE(has_valid_token_count(three));
    EXPECT_FALSE(requested_target(three).has_value());
    auto two = parse_ok("u:QUBESRPC svc src");
    EXPECT_TRUE(has_valid_token_count(two));
}

TEST(Command, TokensSplitOnRunsOfSpaces) {
    auto tokens = split_service_tokens("a  b   c d ");
    ASSERT_EQ(tokens.size(), 4u);
    EXPECT_EQ(tokens[0], "a");
    EXPECT_EQ(tokens[3], "d");
    EXPECT_TRUE(split_service_tokens("").empty());
}
