// Loading and linting whole policy trees: merged directories, the files read, and the
// errors of unreadable or misnamed files and runaway includes.
#include "policy/engine.h"
#include "policy_fixture.h"

#include <gmock/gmock.h>

#include <stdlib.h>
#include <unistd.h>

#include <fstream>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace {

constexpr const char* kRule = "a.B * @anyvm @anyvm allow\n";

TEST(ParentDir, Cases) {
    EXPECT_EQ(parent_dir("a"), ".");
    EXPECT_EQ(parent_dir("/a"), "/");
    EXPECT_EQ(parent_dir("/a/b"), "/a");
    EXPECT_EQ(parent_dir("a/b/c"), "a/b");
}

TEST(Loading, RunDirHidesEtcAndFilesAreListedInReadOrder) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", "!include inc\n");
    loader.add_file("/etc/qubes/policy.d/inc", kRule);
    loader.add_file("/etc/qubes/policy.d/20-b.policy", "a.B * work vault deny\n");
    loader.add_file("/run/qubes/policy.d/20-b.policy", kRule);
    Policy p = load_policy(loader, default_paths());
    ASSERT_TRUE(p.ok()) << *p.error;
    EXPECT_THAT(p.files, ElementsAre("/etc/qubes/policy.d/10-a.policy", "/etc/qubes/policy.d/inc",
                                     "/run/qubes/policy.d/20-b.policy"));
    ASSERT_EQ(p.rules.size(), 2u);
    EXPECT_EQ(p.rules[1].where.str(), "/run/qubes/policy.d/20-b.policy:1");
}

TEST(Loading, MissingDirectoryIsAnErrorOfNoLocation) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", kRule);
    PolicyPaths paths = default_paths();
    paths.dirs.insert(paths.dirs.begin(), "/nope");
    Policy p = load_policy(loader, paths);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(*p.error, "policy directory /nope does not exist or is not a directory");
    EXPECT_FALSE(p.error_location);
    EXPECT_TRUE(p.rules.empty());
}

TEST(Loading, InvalidNameInIncludedDirectoryNamesTheDirective) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", "\n!include-dir sub\n");
    loader.add_file("/etc/qubes/policy.d/sub/Bad.policy", kRule);
    Policy p = load_policy(loader, default_paths());
    ASSERT_FALSE(p.ok());
    EXPECT_THAT(*p.error, HasSubstr("10-a.policy:2: invalid policy file name "
                                    "/etc/qubes/policy.d/sub/Bad.policy"));
    ASSERT_TRUE(p.error_location);
    EXPECT_EQ(p.error_location->line, 2);
}

TEST(Loading, IncludeServiceOfMissingFile) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", "!include-service a.B * /etc/none\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_EQ(*p.error, "/etc/qubes/policy.d/10-a.policy:1: not a file: /etc/none");
}

TEST(Loading, LegacyIncludeLoopIsAnError) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", "!include-service a.B * /etc/legacy\n");
    loader.add_file("/etc/legacy", "$include:/etc/legacy\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_THAT(*p.error, HasSubstr("/etc/legacy:1: includes nested too deeply"));
}

TEST(Loading, LegacyIncludeOfMissingFile) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", "!include-service a.B * /etc/legacy\n");
    loader.add_file("/etc/legacy", "work vault allow\n$include:/etc/none\n");
    Policy p = load_policy(loader, default_paths());
    EXPECT_EQ(*p.error, "/etc/legacy:2: not a file: /etc/none");
}

TEST(Lint, MissingDirectoryAndBadNamesDoNotStopTheOthers) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy", kRule);
    loader.add_file("/etc/qubes/policy.d/20-B.policy", kRule);
    loader.add_file("/run/qubes/policy.d/30-C.policy", kRule);
    PolicyPaths paths = default_paths();
    paths.dirs.push_back("/nope");
    auto report = lint_policy(loader, paths);
    ASSERT_EQ(report.errors.size(), 3u);
    EXPECT_THAT(report.errors[0].what(), HasSubstr("/run/qubes/policy.d/30-C.policy"));
    EXPECT_THAT(report.errors[1].what(), HasSubstr("/etc/qubes/policy.d/20-B.policy"));
    EXPECT_STREQ(report.errors[2].what(),
                 "policy directory /nope does not exist or is not a directory");
    EXPECT_THAT(report.files, ElementsAre("/etc/qubes/policy.d/10-a.policy"));
    EXPECT_EQ(report.rules.size(), 1u);
}

TEST(Lint, IncludeDirWithBadNameIsOneErrorAndTheRestOfTheFileIsChecked) {
    MemoryLoader loader = base_loader();
    loader.add_file("/etc/qubes/policy.d/10-a.policy",
                    "!include-dir sub\nbad\n" + std::string(kRule));
    loader.add_file("/etc/qubes/policy.d/sub/Bad.policy", kRule);
    loader.add_file("/etc/qubes/policy.d/sub/Worse.policy", kRule);
    auto report = lint_policy(loader, default_paths());
    ASSERT_EQ(report.errors.size(), 2u);
    EXPECT_EQ(report.errors[0].where()->str(), "/etc/qubes/policy.d/10-a.policy:1");
    EXPECT_EQ(report.errors[1].where()->str(), "/etc/qubes/policy.d/10-a.policy:2");
    EXPECT_EQ(report.rules.size(), 1u);
}

TEST(Lint, FilesThatCannotBeReadAreErrorsOfNoLocation) {
    MemoryLoader loader = base_loader();
    loader.add_file("/x/ok.policy", kRule);
    loader.add_file("/x/bad.policy", "bad\n");
    auto report = lint_files(loader, {"/x/none.policy", "/x/ok.policy", "/x/bad.policy"},
                             "/etc/qubes-rpc/policy");
    ASSERT_EQ(report.errors.size(), 2u);
    EXPECT_FALSE(report.errors[0].where());
    EXPECT_THAT(report.errors[0].what(), HasSubstr("cannot open /x/none.policy"));
    EXPECT_EQ(report.errors[1].where()->str(), "/x/bad.policy:1");
    EXPECT_THAT(report.files, ElementsAre("/x/ok.policy", "/x/bad.policy"));
    EXPECT_EQ(report.rules.size(), 1u);
}

} // namespace

namespace {

// A file in a fresh temporary directory, removed with it.
class TempFile {
  public:
    explicit TempFile(const std::string& content) {
        char tmpl[] = "/tmp/policy-loading-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        path_ = dir_ + "/f";
        std::ofstream(path_) << content;
    }
    ~TempFile() {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    const std::string& path() const { return path_; }
    const std::string& dir() const { return dir_; }

  private:
    std::string dir_, path_;
};

TEST(ReadFileBounded, ContentLimitAndMissingFile) {
    TempFile f("four");
    std::string error;
    EXPECT_EQ(read_file_bounded(f.path(), 4, "", &error), "four");
    EXPECT_FALSE(read_file_bounded(f.path(), 3, "", &error));
    EXPECT_EQ(error, "file " + f.path() + " is too large");
    EXPECT_FALSE(read_file_bounded(f.path(), 3, "system info file ", &error));
    EXPECT_EQ(error, "system info file " + f.path() + " is too large");
    EXPECT_FALSE(read_file_bounded(f.dir() + "/none", 3, "", &error));
    EXPECT_EQ(error, "cannot open " + f.dir() + "/none: No such file or directory");
}

TEST(ReadFileBounded, LoadersUseIt) {
    TempFile f(R"({"domains": {"work": {}}})");
    std::string error;
    EXPECT_EQ(FsLoader().read_file(f.path(), &error), R"({"domains": {"work": {}}})");
    auto info = load_system_info_file(f.path(), &error);
    ASSERT_TRUE(info) << error;
    EXPECT_TRUE(info->find("work"));
    EXPECT_FALSE(load_system_info_file(f.dir() + "/none", &error));
    EXPECT_EQ(error,
              "cannot open system info file " + f.dir() + "/none: No such file or directory");
}

} // namespace
