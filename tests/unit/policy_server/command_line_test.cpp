// The shared command line of the policy programs (src/policy/programs/command_line.h).
#include "policy_server/programs/command_line.h"

#include <gmock/gmock.h>

#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

using namespace qrexec::policy;
using namespace qrexec::policy::programs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

namespace {

constexpr Program kTest = {"test-prog", "usage: test-prog [--x]\n"};

// argv storage that getopt_long may permute.
class Argv {
  public:
    Argv(std::initializer_list<const char*> args) {
        strings_.emplace_back("test-prog");
        for (const char* a : args)
            strings_.emplace_back(a);
        for (auto& s : strings_)
            pointers_.push_back(s.data());
        pointers_.push_back(nullptr);
    }
    int argc() const { return static_cast<int>(strings_.size()); }
    char** argv() { return pointers_.data(); }

  private:
    std::vector<std::string> strings_;
    std::vector<char*> pointers_;
};

TEST(SplitDirList, SkipsEmptyParts) {
    EXPECT_THAT(split_dir_list("/a:/b"), ElementsAre("/a", "/b"));
    EXPECT_THAT(split_dir_list(":/a::/b:"), ElementsAre("/a", "/b"));
    EXPECT_THAT(split_dir_list(""), IsEmpty());
    EXPECT_THAT(split_dir_list(":"), IsEmpty());
}

TEST(CommandLine, SharedOptionsAndHandlersInOrder) {
    std::vector<std::string> seen;
    CommandLine cl(kTest, kPolicyDirOption | kSystemInfoOption);
    cl.option("name", [&](const char* v) { seen.push_back(std::string("name=") + v); });
    cl.flag("yes", [&] { seen.push_back("yes"); });
    Argv a{"--policy-dir", "/a:/b", "pos1", "--yes",         "--policy-dir=/c",
           "--name",       "n1",    "pos2", "--system-info", "/s.json"};
    auto positional = cl.parse(a.argc(), a.argv());
    EXPECT_THAT(positional, ElementsAre("pos1", "pos2"));
    EXPECT_THAT(seen, ElementsAre("yes", "name=n1"));
    EXPECT_THAT(cl.shared.policy_dirs, ElementsAre("/a", "/b", "/c"));
    EXPECT_EQ(cl.shared.system_info, "/s.json");
}

TEST(CommandLine, DoubleDashEndsOptions) {
    bool yes = false;
    CommandLine cl(kTest, 0);
    cl.flag("yes", [&] { yes = true; });
    Argv a{"--", "--yes", "x"};
    EXPECT_THAT(cl.parse(a.argc(), a.argv()), ElementsAre("--yes", "x"));
    EXPECT_FALSE(yes);
}

TEST(CommandLine, ParsesAgainInTheSameProcess) {
    for (int round = 0; round < 2; ++round) {
        CommandLine cl(kTest, kSystemInfoOption);
        Argv a{"--system-info", "/f", "p"};
        EXPECT_THAT(cl.parse(a.argc(), a.argv()), ElementsAre("p")) << round;
        EXPECT_EQ(cl.shared.system_info, "/f");
    }
}

TEST(CommandLine, PolicyPathsFromOptionOrEnvironment) {
    SharedOptions options;
    ::setenv("QREXEC_POLICY_DIR", "/env1:/env2", 1);
    EXPECT_THAT(options.policy_paths().dirs, ElementsAre("/env1", "/env2"));
    options.policy_dirs = {"/opt"};
    EXPECT_THAT(options.policy_paths().dirs, ElementsAre("/opt"));
    ::unsetenv("QREXEC_POLICY_DIR");
    options.policy_dirs.clear();
    EXPECT_EQ(options.policy_paths().dirs, PolicyPaths::default_dirs());
}

// Parses argv for a program that accepts only --policy-dir (and --help).
void parse_policy_dir_only(std::initializer_list<const char*> args) {
    CommandLine cl(kTest, kPolicyDirOption);
    Argv a(args);
    cl.parse(a.argc(), a.argv());
}

using CommandLineDeathTest = ::testing::Test;

TEST_F(CommandLineDeathTest, UnknownOptionIsAUsageError) {
    // --system-info is not selected for this program.
    EXPECT_EXIT(parse_policy_dir_only({"--system-info", "/f"}), ::testing::ExitedWithCode(2),
                "test-prog: error: unrecognized arguments: --system-info");
}

TEST_F(CommandLineDeathTest, MissingValueIsAUsageError) {
    EXPECT_EXIT(parse_policy_dir_only({"--policy-dir"}), ::testing::ExitedWithCode(2),
                "usage: test-prog(.|\n)*argument --policy-dir: expected one argument");
}

TEST_F(CommandLineDeathTest, HelpExitsZero) {
    EXPECT_EXIT(parse_policy_dir_only({"--help"}), ::testing::ExitedWithCode(0), "");
}

} // namespace
