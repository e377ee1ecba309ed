#include "lab/domain_user.h"

#include "io/fd.h"
#include "io/privileges.h"
#include "io/process.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

std::optional<std::string> name_of_uid(uid_t uid) {
    if (struct passwd* pw = getpwuid(uid)) return std::string(pw->pw_name);
    return std::nullopt;
}

// "/", "/a", "/a/b" for "/a/b/c": the folders one passes to reach a path.
std::vector<std::string> folders_on_the_way(const std::string& path) {
    std::vector<std::string> out{"/"};
    size_t pos = 1;
    for (;;) {
        size_t slash = path.find('/', pos);
        if (slash == std::string::npos) break;
        out.push_back(path.substr(0, slash));
        pos = slash + 1;
    }
    return out;
}

// In the child that became the user: where the need is stopped, "" if it is not.
std::string first_block(const AccessNeed& need) {
    for (const auto& folder : folders_on_the_way(need.path)) {
        struct stat st {};
        if (need.access == Access::reach && stat(folder.c_str(), &st) != 0) return {};
        if (access(folder.c_str(), X_OK) != 0) return folder;
    }
    switch (need.access) {
    case Access::read_folder:
        return access(need.path.c_str(), R_OK | X_OK) == 0 ? std::string() : need.path;
    case Access::write:
        return access(need.path.c_str(), W_OK | X_OK) == 0 ? std::string() : need.path;
    case Access::run:
        return access(need.path.c_str(), X_OK) == 0 ? std::string() : need.path;
    case Access::reach:
        return {};
    }
    return need.path;
}

bool become_user(const struct passwd& pw) {
    auto groups = io::groups_of_user(pw.pw_name, pw.pw_gid);
    if (!groups || initgroups(pw.pw_name, pw.pw_gid) != 0 || setgid(pw.pw_gid) != 0 ||
        setuid(pw.pw_uid) != 0)
        return false;
    return !io::verify_dropped_privileges(pw.pw_uid, pw.pw_gid, *groups);
}

std::string folder_hint(const std::string& blocked, const std::string& domain) {
    return fmt::format("chmod o+x {} (a+rX for the domain's own folder), or give '{}' a user "
                       "who can: user = \"<name>\", or user = \"root\"",
                       blocked, domain);
}

} // namespace

DefaultUser default_domain_user(bool lab_is_root, uid_t file_owner,
                                const std::optional<std::string>& owner_name) {
    if (!lab_is_root) return {};
    if (file_owner == 0) return {"nobody", {}};
    if (!owner_name)
        return {{}, fmt::format("the lab file's owner (uid {}) has no user name", file_owner)};
    return {*owner_name, {}};
}

std::vector<Diagnostic> assign_domain_users(Lab& lab, uid_t invoking_uid,
                                            const std::string& invoking_user) {
    std::vector<Diagnostic> errors;
    if (invoking_uid != 0) {
        for (const auto& d : lab.domains)
            if (!d.user.empty() && d.user != invoking_user)
                errors.push_back(
                    {lab.file, d.line,
                     fmt::format("domain '{}' asks to run as '{}', but the lab runs as '{}' and "
                                 "only root can switch users",
                                 d.name, d.user, invoking_user),
                     "run qrexec-lab as root, or remove the domain's 'user' key"});
        return errors;
    }
    struct stat st {};
    if (!lab.file.empty() && stat(lab.file.c_str(), &st) != 0) {
        errors.push_back(
            {lab.file, 0, fmt::format("cannot stat the lab file: {}", std::strerror(errno)), ""});
        return errors;
    }
    DefaultUser chosen = default_domain_user(true, st.st_uid, name_of_uid(st.st_uid));
    if (chosen.error.empty() && !getpwnam(chosen.user.c_str()))
        chosen.error = fmt::format("there is no user '{}' on this machine", chosen.user);
    for (auto& d : lab.domains) {
        if (!d.user.empty()) continue;
        if (!chosen.error.empty()) {
            errors.push_back(
                {lab.file, d.line,
                 fmt::format("domain '{}' has no 'user', and {}", d.name, chosen.error),
                 "name the user its services run as: user = \"<name>\" (or "
                 "user = \"root\")"});
            continue;
        }
        d.user = chosen.user;
    }
    return errors;
}

std::optional<std::vector<AccessDenied>>
denied_to_user(const std::string& user, const std::vector<AccessNeed>& needs, std::string& error) {
    struct passwd* found = getpwnam(user.c_str());
    if (!found) {
        error = fmt::format("there is no user '{}'", user);
        return std::nullopt;
    }
    struct passwd pw = *found;
    std::string name = pw.pw_name; // the static buffer is not ours to keep
    pw.pw_name = name.data();
    io::FdPair answer = io::make_pipe();
    int out = answer.second.get();
    io::Child child = io::spawn({-1, out, -1}, [&]() -> int {
        if (!become_user(pw)) return 126;
        // One record per blocked need: its index and the path that blocks it.
        std::string report;
        for (size_t i = 0; i < needs.size(); ++i) {
            std::string blocked = first_block(needs[i]);
            if (!blocked.empty()) report += std::to_string(i) + '\0' + blocked + '\0';
        }
        return io::write_all(1, report) ? 0 : 125;
    });
    answer.second.reset();
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(answer.first.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) text.append(buf, static_cast<size_t>(n));
    int status = child.wait();
    if (status != 0) {
        error = status == 126 ? fmt::format("cannot become user '{}' to check", user)
                              : fmt::format("the check as '{}' failed (status {})", user, status);
        return std::nullopt;
    }
    std::vector<AccessDenied> denied;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t a = text.find('\0', pos);
        size_t b = a == std::string::npos ? a : text.find('\0', a + 1);
        if (b == std::string::npos) break;
        size_t index = std::stoul(text.substr(pos, a - pos));
        if (index < needs.size()) denied.push_back({needs[index], text.substr(a + 1, b - a - 1)});
        pos = b + 1;
    }
    return denied;
}

std::string describe_mode(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return {};
    std::string owner = name_of_uid(st.st_uid).value_or(std::to_string(st.st_uid));
    std::string group = std::to_string(st.st_gid);
    if (struct group* gr = getgrgid(st.st_gid)) group = gr->gr_name;
    return fmt::format("mode {:04o}, owner {}:{}", st.st_mode & 07777, owner, group);
}

AccessReport check_domain_access(const Lab& lab, const std::string& invoking_user,
                                 const std::string& state_dir,
                                 const std::vector<std::string>& programs) {
    AccessReport report;
    std::set<std::string> unrunnable;
    for (const auto& d : lab.domains) {
        if (d.user.empty() || d.user == invoking_user) continue;
        std::vector<AccessNeed> needs{{d.folder, Access::read_folder},
                                      {d.services, Access::read_folder}};
        if (!d.rpc_config.empty()) needs.push_back({d.rpc_config, Access::read_folder});
        needs.push_back({state_dir, Access::reach});
        needs.push_back({d.folder, Access::write});
        for (const auto& p : programs)
            needs.push_back({p, Access::run});
        std::string error;
        auto denied = denied_to_user(d.user, needs, error);
        if (!denied) {
            report.errors.push_back({lab.file, d.line,
                                     fmt::format("domain '{}': {}", d.name, error),
                                     "name an existing user: user = \"<name>\""});
            continue;
        }
        std::set<std::string> reported; // one message per blocking folder
        for (const auto& x : *denied) {
            std::string mode = describe_mode(x.blocked_at);
            bool on_the_way = x.blocked_at != x.need.path;
            switch (x.need.access) {
            case Access::read_folder:
                if (!reported.insert(x.blocked_at).second) break;
                report.errors.push_back(
                    {lab.file, d.line,
                     fmt::format("domain '{}' runs as '{}', who cannot {} {} ({}){}", d.name,
                                 d.user, on_the_way ? "enter" : "read", x.blocked_at, mode,
                                 on_the_way ? fmt::format(" on the way to {}", x.need.path)
                                            : std::string()),
                     folder_hint(x.blocked_at, d.name)});
                break;
            case Access::reach:
                if (!reported.insert(x.blocked_at).second) break;
                report.errors.push_back(
                    {lab.file, d.line,
                     fmt::format("domain '{}' runs as '{}', who cannot enter {} ({}) on the way "
                                 "to the lab's state dir {}",
                                 d.name, d.user, x.blocked_at, mode, state_dir),
                     fmt::format("chmod o+x {}, or use a --state-dir '{}' can reach (e.g. "
                                 "under /tmp), or user = \"root\" for '{}'",
                                 x.blocked_at, d.user, d.name)});
                break;
            case Access::write:
                if (reported.count(x.blocked_at)) break;
                report.warnings.push_back(fmt::format(
                    "domain '{}' runs as '{}', who cannot write to its folder {} ({}): "
                    "services that store files there will fail\n  hint: chown -R {} {}, or "
                    "user = \"<name>\" for '{}'",
                    d.name, d.user, x.need.path, mode, d.user, x.need.path, d.name));
                break;
            case Access::run:
                unrunnable.insert(x.need.path);
                break;
            }
        }
    }
    report.unrunnable.assign(unrunnable.begin(), unrunnable.end());
    return report;
}

} // namespace qrexec::lab
