#include "io/privileges.h"
#include "io/process.h"

#include "in_child.h"

#include <gtest/gtest.h>

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

using namespace qrexec::io;
using qrexec::io::fixtures::in_child;

namespace {

constexpr uid_t kUser = 65534; // nobody
constexpr gid_t kGroup = 65534;
const std::vector<gid_t> kSupplementary = {4, 24, 27}; // a user with some groups

int drop(const std::vector<gid_t>& groups, bool keep_saved_root) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setresgid(kGroup, kGroup, kGroup) != 0)
        return 90;
    uid_t saved = keep_saved_root ? 0 : kUser;
    if (::setresuid(kUser, kUser, saved) != 0) return 91;
    return 0;
}

} // namespace

TEST(Privileges, AsRootAProperDropVerifiesAndRootCannotBeRegained) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges";
    int status = in_child([] {
        if (int rc = drop(kSupplementary, false)) return rc;
        return verify_dropped_privileges(kUser, kGroup, kSupplementary) ? 1 : 0;
    });
    EXPECT_EQ(status, 0);
}

TEST(Privileges, AStraySupplementaryGroupIsCaught) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges";
    int status = in_child([] {
        std::vector<gid_t> more = kSupplementary;
        more.push_back(0); // root's group left behind
        if (int rc = drop(more, false)) return rc;
        return verify_dropped_privileges(kUser, kGroup, kSupplementary) ? 0 : 1;
    });
    EXPECT_EQ(status, 0);
}

TEST(Privileges, ASavedRootUidIsCaught) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges";
    int status = in_child([] {
        if (int rc = drop(kSupplementary, true)) return rc;
        auto why = verify_dropped_privileges(kUser, kGroup);
        return why && why->find("uids") != std::string::npos ? 0 : 1;
    });
    EXPECT_EQ(status, 0);
}

TEST(Privileges, ThePresentIdentityVerifiesAndAWrongOneDoesNot) {
    // Without dropping anything: our own ids match, anyone else's do not.
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    if (::geteuid() != uid || ::getegid() != gid) GTEST_SKIP() << "setuid test binary";
    int status = in_child([uid, gid] {
        if (verify_dropped_privileges(uid + 1, gid)) {
            return verify_dropped_privileges(uid, gid + 1) ? 0 : 2;
        }
        return 1;
    });
    EXPECT_EQ(status, 0);
}

TEST(Privileges, GroupsOfUserIncludeThePrimaryGroup) {
    auto groups = groups_of_user("root", 0);
    ASSERT_TRUE(groups);
    EXPECT_NE(std::find(groups->begin(), groups->end(), 0u), groups->end());
    EXPECT_TRUE(std::is_sorted(groups->begin(), groups->end()));
}
