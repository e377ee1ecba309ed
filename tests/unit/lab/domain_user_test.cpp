#include "lab/domain_user.h"

#include <gtest/gtest.h>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace qrexec::lab {
namespace fixtures {

// A temp folder tree removed at the end; modes are set by the tests.
struct TempTree {
    std::string root;
    TempTree() {
        char tmpl[] = "/tmp/qrexec-domain-user-XXXXXX";
        root = mkdtemp(tmpl) ? tmpl : "";
    }
    ~TempTree() {
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }
};

Domain domain(std::string name, std::string user = "", int line = 0, std::string folder = "",
              std::string services = "") {
    Domain d;
    d.name = std::move(name);
    d.user = std::move(user);
    d.line = line;
    d.folder = std::move(folder);
    d.services = std::move(services);
    return d;
}

bool as_root_with_nobody() {
    return getuid() == 0 && getpwnam("nobody") != nullptr;
}

} // namespace fixtures

TEST(DomainUser, NotRootKeepsTheInvokingUser) {
    EXPECT_EQ(default_domain_user(false, 1000, std::string("alice")).user, "");
    EXPECT_EQ(default_domain_user(false, 0, std::string("root")).user, "");
}

TEST(DomainUser, RootRunsDomainsAsTheLabFilesOwner) {
    auto chosen = default_domain_user(true, 1000, std::string("alice"));
    EXPECT_EQ(chosen.user, "alice");
    EXPECT_EQ(chosen.error, "");
}

TEST(DomainUser, RootOwnedLabFileGivesNobodyNeverRoot) {
    EXPECT_EQ(default_domain_user(true, 0, std::string("root")).user, "nobody");
}

TEST(DomainUser, OwnerWithoutANameIsAnError) {
    auto chosen = default_domain_user(true, 4242, std::nullopt);
    EXPECT_EQ(chosen.user, "");
    EXPECT_NE(chosen.error.find("uid 4242"), std::string::npos) << chosen.error;
}

TEST(DomainUser, NotRootRefusesAnotherUserButAcceptsItsOwn) {
    if (getuid() == 0) GTEST_SKIP() << "checks what a lab run by a user refuses";
    Lab lab;
    lab.file = "/lab/lab.toml";
    lab.domains.push_back(fixtures::domain("work", "root", 7));
    lab.domains.push_back(fixtures::domain("mine", "me", 12));
    lab.domains.push_back(fixtures::domain("plain", "", 15));
    auto errors = assign_domain_users(lab, getuid(), "me");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].line, 7);
    EXPECT_NE(errors[0].message.find("'work' asks to run as 'root'"), std::string::npos);
    EXPECT_EQ(lab.domains[2].user, ""); // nothing changes for a user's lab
}

TEST(DomainUser, RootAssignsNobodyForARootOwnedFileAndKeepsExplicitUsers) {
    if (!fixtures::as_root_with_nobody()) GTEST_SKIP() << "needs root and a user nobody";
    fixtures::TempTree tree;
    std::string file = tree.root + "/lab.toml";
    std::ofstream(file) << "[lab]\n";
    Lab lab;
    lab.file = file;
    lab.domains.push_back(fixtures::domain("plain"));
    lab.domains.push_back(fixtures::domain("admin", "root"));
    EXPECT_TRUE(assign_domain_users(lab, 0, "root").empty());
    EXPECT_EQ(lab.domains[0].user, "nobody");
    EXPECT_EQ(lab.domains[1].user, "root");
    // The owner of the file, when it is not root.
    struct passwd* nobody = getpwnam("nobody");
    ASSERT_EQ(chown(file.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
    lab.domains[0].user.clear();
    EXPECT_TRUE(assign_domain_users(lab, 0, "root").empty());
    EXPECT_EQ(lab.domains[0].user, "nobody");
}

TEST(DomainUser, DeniedNamesTheFolderThatBlocks) {
    if (!fixtures::as_root_with_nobody()) GTEST_SKIP() << "needs root and a user nobody";
    fixtures::TempTree tree;
    std::string inner = tree.root + "/a/b";
    std::filesystem::create_directories(inner);
    ASSERT_EQ(chmod(tree.root.c_str(), 0755), 0);
    ASSERT_EQ(chmod((tree.root + "/a").c_str(), 0700), 0);
    ASSERT_EQ(chmod(inner.c_str(), 0755), 0);
    std::string error;
    auto denied = denied_to_user("nobody",
                                 {{inner, Access::read_folder},
                                  {tree.root, Access::read_folder},
                                  {inner + "/state", Access::reach},
                                  {tree.root, Access::write}},
                                 error);
    ASSERT_TRUE(denied) << error;
    ASSERT_EQ(denied->size(), 3u);
    EXPECT_EQ((*denied)[0].need.path, inner);
    EXPECT_EQ((*denied)[0].blocked_at, tree.root + "/a");
    EXPECT_EQ((*denied)[1].need.access, Access::reach);
    EXPECT_EQ((*denied)[1].blocked_at, tree.root + "/a");
    EXPECT_EQ((*denied)[2].need.access, Access::write);
    EXPECT_EQ((*denied)[2].blocked_at, tree.root);
    // Opened up, nothing is denied; a state dir that does not exist yet is fine.
    ASSERT_EQ(chmod((tree.root + "/a").c_str(), 0711), 0);
    denied = denied_to_user("nobody",
                            {{inner, Access::read_folder}, {inner + "/x/y", Access::reach}}, error);
    ASSERT_TRUE(denied) << error;
    EXPECT_TRUE(denied->empty());
}

TEST(DomainUser, CheckReportsErrorsWarningsAndUnrunnablePrograms) {
    if (!fixtures::as_root_with_nobody()) GTEST_SKIP() << "needs root and a user nobody";
    fixtures::TempTree tree;
    ASSERT_EQ(chmod(tree.root.c_str(), 0755), 0);
    std::string dom = tree.root + "/work", hidden = tree.root + "/hidden";
    std::filesystem::create_directories(dom + "/rpc");
    std::filesystem::create_directories(hidden);
    ASSERT_EQ(chmod(hidden.c_str(), 0700), 0);
    std::string program = hidden + "/qrexec-agent";
    std::ofstream(program) << "#!/bin/sh\n";
    ASSERT_EQ(chmod(program.c_str(), 0755), 0);
    Lab lab;
    lab.file = tree.root + "/lab.toml";
    lab.domains.push_back(fixtures::domain("work", "nobody", 9, dom, dom + "/rpc"));
    lab.domains.push_back(
        fixtures::domain("admin", "root", 14, hidden, hidden)); // the invoking user: not checked
    auto report = check_domain_access(lab, "root", tree.root + "/state", {program});
    EXPECT_TRUE(report.errors.empty()) << report.errors.front().format();
    ASSERT_EQ(report.warnings.size(), 1u); // root owns work's folder
    EXPECT_NE(report.warnings[0].find("'work' runs as 'nobody', who cannot write"),
              std::string::npos);
    EXPECT_EQ(report.unrunnable, std::vector<std::string>{program});

    ASSERT_EQ(chmod(dom.c_str(), 0700), 0);
    report = check_domain_access(lab, "root", tree.root + "/state", {});
    ASSERT_EQ(report.errors.size(), 1u); // one message for the folder that blocks
    EXPECT_EQ(report.errors[0].line, 9);
    auto text = report.errors[0].format();
    EXPECT_NE(text.find("domain 'work' runs as 'nobody', who cannot read " + dom),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("mode 0700"), std::string::npos) << text;
    EXPECT_NE(text.find("hint: chmod o+x " + dom), std::string::npos) << text;
}

} // namespace qrexec::lab
