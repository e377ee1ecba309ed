#include "io/privileges.h"

#include <grp.h>
#include <unistd.h>

#include <algorithm>

namespace qrexec::io {

std::optional<std::vector<gid_t>> groups_of_user(const char* name, gid_t gid) {
    int count = 16;
    std::vector<gid_t> groups;
    for (int attempt = 0; attempt < 8; ++attempt) {
        groups.resize(static_cast<size_t>(count));
        int asked = count;
        if (::getgrouplist(name, gid, groups.data(), &count) >= 0) {
            groups.resize(static_cast<size_t>(count));
            std::sort(groups.begin(), groups.end());
            groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
            return groups;
        }
        if (count <= asked) count = asked * 2; // glibc reports the size it needs
    }
    return std::nullopt;
}

namespace {

std::optional<std::vector<gid_t>> current_groups() {
    int count = ::getgroups(0, nullptr);
    if (count < 0) return std::nullopt;
    std::vector<gid_t> groups(static_cast<size_t>(count));
    count = ::getgroups(count, groups.data());
    if (count < 0) return std::nullopt;
    groups.resize(static_cast<size_t>(count));
    std::sort(groups.begin(), groups.end());
    groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
    return groups;
}

} // namespace

namespace {

std::optional<std::string> verify(uid_t uid, gid_t gid,
                                  std::optional<std::span<const gid_t>> groups) {
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0)
        return "cannot read back uids/gids";
    if (ruid != uid || euid != uid || suid != uid)
        return "uids are " + std::to_string(ruid) + "/" + std::to_string(euid) + "/" +
               std::to_string(suid) + ", expected " + std::to_string(uid);
    if (rgid != gid || egid != gid || sgid != gid)
        return "gids are " + std::to_string(rgid) + "/" + std::to_string(egid) + "/" +
               std::to_string(sgid) + ", expected " + std::to_string(gid);
    if (groups) {
        auto have = current_groups();
        std::vector<gid_t> want(groups->begin(), groups->end());
        std::sort(want.begin(), want.end());
        want.erase(std::unique(want.begin(), want.end()), want.end());
        // The primary gid may or may not be listed among the supplementary ones.
        auto without = [gid](std::vector<gid_t> list) {
            std::erase(list, gid);
            return list;
        };
        if (!have || without(*have) != without(want))
            return "supplementary groups differ from the ones asked for";
    }
    if (uid != 0) {
        if (::setuid(0) == 0) return "setuid(0) succeeded after dropping privileges";
        if (gid != 0 && ::setgid(0) == 0) return "setgid(0) succeeded after dropping privileges";
    }
    return std::nullopt;
}

} // namespace

std::optional<std::string> verify_dropped_privileges(uid_t uid, gid_t gid,
                                                     std::span<const gid_t> groups) {
    return verify(uid, gid, groups);
}

std::optional<std::string> verify_dropped_privileges(uid_t uid, gid_t gid) {
    return verify(uid, gid, std::nullopt);
}

} // namespace qrexec::io
