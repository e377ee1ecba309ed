// Which Unix user each domain of a lab runs as, and whether that user can do
// what its domain needs (docs/LAB.md, "Users").
#pragma once

#include "lab/labfile.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

// The user a domain without `user` runs as. A lab that is not run as root
// cannot switch users: "" (the invoking user). As root: the owner of the lab
// file, or "nobody" when root owns it; root only when the lab file says so.
// `owner_name` is the owner's name, nullopt when it has none (then: error).
struct DefaultUser {
    std::string user;
    std::string error;
};
DefaultUser default_domain_user(bool lab_is_root, uid_t file_owner,
                                const std::optional<std::string>& owner_name);

// Gives every domain without `user` its default user (resolved once here, so
// lab.json, `status`, `call` and the supervisor all agree), and refuses domains
// asking for a user a lab that is not run as root cannot become.
std::vector<Diagnostic> assign_domain_users(Lab& lab, uid_t invoking_uid,
                                            const std::string& invoking_user);

// Something a domain's user must be able to do.
enum class Access {
    read_folder, // enter every folder on the way, list and enter this one
    write,       // create files in this folder
    run,         // execute this program
    reach,       // enter every existing folder on the way to this path
};
struct AccessNeed {
    std::string path;
    Access access = Access::read_folder;
};

// What the user cannot do: the need, and the path that stops it (the need's
// own path, or a folder on the way to it).
struct AccessDenied {
    AccessNeed need;
    std::string blocked_at;
};

// Tries every need as `user`, in a child that has become that user (real and
// effective ids and groups, so modes, ACLs and group membership all count).
// nullopt (with `error`) when the check itself could not run.
std::optional<std::vector<AccessDenied>>
denied_to_user(const std::string& user, const std::vector<AccessNeed>& needs, std::string& error);

// The checks `up` makes, before anything starts, for every domain that runs as
// someone other than the invoking user: its folders and the state dir must be
// reachable (errors, naming the domain, user, path and a fix), its folder
// writable (a warning: services that store files there would fail).
// `programs` are the programs that run as the domain's user; those it cannot
// run are listed in `unrunnable` (`up` then runs copies from the state dir).
struct AccessReport {
    std::vector<Diagnostic> errors;
    std::vector<std::string> warnings;
    std::vector<std::string> unrunnable;
};
AccessReport check_domain_access(const Lab& lab, const std::string& invoking_user,
                                 const std::string& state_dir,
                                 const std::vector<std::string>& programs);

// "drwx------ root:root" for messages; "" if it cannot be read.
std::string describe_mode(const std::string& path);

} // namespace qrexec::lab
