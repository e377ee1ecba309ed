#include "services/lookup.h"

#include "services/tcp.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace qrexec::services {
namespace {

FindResult error_result(int err) {
    FindResult result;
    result.status = LookupStatus::Error;
    result.error_number = err;
    return result;
}

// Reads a symlink's target; false with errno on failure.
bool read_link(const std::string& path, std::string& target) {
    char buffer[PATH_MAX];
    ssize_t n = readlink(path.c_str(), buffer, sizeof buffer);
    if (n < 0) return false;
    if (static_cast<size_t>(n) >= sizeof buffer) {
        errno = ENAMETOOLONG;
        return false;
    }
    target.assign(buffer, static_cast<size_t>(n));
    return true;
}

} // namespace

std::vector<std::string> split_path_list(std::string_view list) {
    std::vector<std::string> dirs;
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(':', pos);
        if (end == std::string_view::npos) end = list.size();
        if (end > pos) dirs.emplace_back(list.substr(pos, end - pos));
        pos = end + 1;
    }
    return dirs;
}

SearchPaths SearchPaths::from_environment() {
    const char* services = std::getenv("QREXEC_SERVICE_PATH");
    const char* configs = std::getenv("QUBES_RPC_CONFIG_PATH");
    return SearchPaths{split_path_list(services ? services : kDefaultServicePath),
                       split_path_list(configs ? configs : kDefaultConfigPath)};
}

FindResult find(const std::vector<std::string>& dirs, std::string_view name, LookupMode mode) {
    FindResult absent;
    if (name.size() > NAME_MAX) return absent; // treated as absent, FS untouched
    for (const auto& dir : dirs) {
        std::string path = dir + "/" + std::string(name);
        if (path.size() + 1 > kMaxLookupPath) return error_result(ENAMETOOLONG);
        struct stat st {};
        if (lstat(path.c_str(), &st) != 0) {
            if (errno == ENOENT) continue;
            return error_result(errno);
        }
        FindResult found;
        found.status = LookupStatus::Found;
        found.path = path;
        found.st = st;
        if (!S_ISLNK(st.st_mode)) return found;
        if (mode == LookupMode::Service) {
            std::string target;
            if (!read_link(path, target)) return error_result(errno);
            if (target == "/dev/tcp/") return error_result(0);
            if (target == kDevTcp || target.starts_with("/dev/tcp/")) {
                found.is_tcp = true;
                found.tcp_target = std::move(target);
                return found;
            }
        }
        if (stat(path.c_str(), &found.st) != 0) {
            if (errno == ENOENT) continue; // dangling symlink: absent here
            return error_result(errno);
        }
        return found;
    }
    return absent;
}

ServiceKind classify(const FindResult& found) {
    if (found.is_tcp) return ServiceKind::Tcp;
    if (S_ISSOCK(found.st.st_mode)) return ServiceKind::Socket;
    // A directory is "executable" for euidaccess but can never be exec'd.
    if (S_ISDIR(found.st.st_mode)) return ServiceKind::Other;
    if (euidaccess(found.path.c_str(), X_OK) == 0) return ServiceKind::Executable;
    return ServiceKind::Other;
}

ServiceLookup find_service(const std::vector<std::string>& service_dirs,
                           const ParsedCommand& command) {
    FindResult found = find(service_dirs, command.lookup_descriptor, LookupMode::Service);
    if (found.status == LookupStatus::NotFound)
        found = find(service_dirs, command.service_name, LookupMode::Service);
    ServiceLookup result;
    result.status = found.status;
    if (found.status != LookupStatus::Found) return result;
    result.kind = classify(found);
    result.path = found.path;
    result.tcp_target = found.tcp_target;
    return result;
}

} // namespace qrexec::services
