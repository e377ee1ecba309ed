// Verification after a privilege drop: a drop that "succeeded" call by call can
// still leave a saved uid of 0 or a stray supplementary group behind. The
// checks read back what the kernel holds and try to regain root.
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qrexec::io {

// The supplementary groups a user gets from initgroups(name, gid) (sorted).
std::optional<std::vector<gid_t>> groups_of_user(const char* name, gid_t gid);

// Checks that the real, effective and saved uid are all `uid`, the gids all
// `gid`, that the supplementary groups are exactly `groups` (order does not
// matter), and, if uid is not 0, that setuid(0) and setgid(0) fail. Returns
// why not, or nullopt when the process holds exactly what was asked.
std::optional<std::string> verify_dropped_privileges(uid_t uid, gid_t gid,
                                                     std::span<const gid_t> groups);
// The same without looking at supplementary groups (a drop that keeps them).
std::optional<std::string> verify_dropped_privileges(uid_t uid, gid_t gid);

} // namespace qrexec::io
