// DAEMON.md §1 command line and environment.
#include "daemon/options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace qrexec::daemon;

namespace {
ParseOutcome parse(std::initializer_list<const char*> args) {
    std::vector<std::string> storage{"qrexec-daemon"};
    for (auto* a : args)
        storage.emplace_back(a);
    std::vector<char*> argv;
    for (auto& s : storage)
        argv.push_back(s.data());
    testing::internal::CaptureStderr(); // getopt's own messages
    auto out = parse_options(static_cast<int>(argv.size()), argv.data());
    testing::internal::GetCapturedStderr();
    return out;
}
} // namespace

TEST(Options, Minimal) {
    auto out = parse({"-u", "U", "5", "work"});
    ASSERT_TRUE(out.options);
    EXPECT_EQ(out.options->domid, 5);
    EXPECT_EQ(out.options->name, "work");
    EXPECT_EQ(out.options->default_user, "user");
    EXPECT_EQ(out.options->uuid, "U");
    EXPECT_EQ(out.options->socket_dir, "/var/run/qubes");
    EXPECT_EQ(out.options->policy_program, "/usr/bin/qrexec-policy-exec");
    EXPECT_FALSE(out.options->direct);
    EXPECT_FALSE(out.options->quiet);
}

TEST(Options, AllForms) {
    auto out = parse({"5", "-q", "--socket-dir", "/s", "-p/pp", "work", "--uuid=U", "-D", "alice",
                      "--policy-socket=/ps", "--qrexec-client", "/qc"});
    ASSERT_TRUE(out.options);
    EXPECT_TRUE(out.options->quiet);
    EXPECT_TRUE(out.options->direct);
    EXPECT_EQ(out.options->socket_dir, "/s");
    EXPECT_EQ(out.options->policy_program, "/pp");
    EXPECT_EQ(out.options->uuid, "U");
    EXPECT_EQ(out.options->default_user, "alice");
    EXPECT_EQ(out.options->policy_socket, "/ps");
    EXPECT_EQ(out.options->qrexec_client, "/qc");
    auto longs = parse({"--policy-program", "/p2", "--quiet", "--direct", "-uX", "5", "w"});
    ASSERT_TRUE(longs.options);
    EXPECT_EQ(longs.options->policy_program, "/p2");
    EXPECT_EQ(longs.options->uuid, "X");
}

TEST(Options, Errors) {
    auto help = parse({"-h"});
    EXPECT_FALSE(help.options);
    EXPECT_EQ(help.exit_code, 1);
    EXPECT_TRUE(help.show_usage);

    auto few = parse({"-u", "U", "5"});
    EXPECT_EQ(few.exit_code, 1);
    EXPECT_TRUE(few.show_usage);
    auto many = parse({"-u", "U", "5", "a", "b", "c"});
    EXPECT_EQ(many.exit_code, 1);

    // positional count is checked before the UUID
    auto no_uuid_few = parse({"5"});
    EXPECT_TRUE(no_uuid_few.message.empty());
    auto no_uuid = parse({"5", "work"});
    EXPECT_EQ(no_uuid.exit_code, 1);
    EXPECT_EQ(no_uuid.message, "Domain UUID option missing!");
    EXPECT_TRUE(no_uuid.show_usage);

    auto zero = parse({"-u", "U", "0", "work"});
    EXPECT_EQ(zero.exit_code, 1);
    EXPECT_EQ(zero.message, "domain id=0?");
    EXPECT_FALSE(zero.show_usage);
    EXPECT_EQ(parse({"-u", "U", "abc", "work"}).message, "domain id=0?");

    EXPECT_EQ(parse({"--bogus", "-u", "U", "5", "w"}).exit_code, 1);
    EXPECT_EQ(parse({"-u"}).exit_code, 1); // missing argument
}

TEST(Options, StartupTimeout) {
    EXPECT_EQ(startup_timeout_seconds(nullptr), 60);
    EXPECT_EQ(startup_timeout_seconds("5"), 5);
    EXPECT_EQ(startup_timeout_seconds("0"), 60);
    EXPECT_EQ(startup_timeout_seconds("-3"), 60);
    EXPECT_EQ(startup_timeout_seconds("x"), 60);
    EXPECT_EQ(startup_timeout_seconds(""), 60);
}

TEST(Options, RequestTimeoutOverride) {
    auto defaults = timeouts_from_environment(nullptr);
    EXPECT_EQ(defaults.policy.count(), 300000);
    auto fast = timeouts_from_environment("0.5");
    EXPECT_EQ(fast.policy.count(), 500);
    EXPECT_EQ(fast.target.count(), 500);
    EXPECT_EQ(fast.qubesd.count(), 500);
    EXPECT_EQ(fast.dom0_client.count(), 500);
    EXPECT_EQ(timeouts_from_environment("nope").policy.count(), 300000);
    EXPECT_EQ(timeouts_from_environment("-1").policy.count(), 300000);
}
