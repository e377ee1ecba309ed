// Service and rpc-config lookup in a list of directories (AGENT.md §4.1, §2.2).
#pragma once

#include "services/command.h"

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <vector>

namespace qrexec::services {

inline constexpr const char* kDefaultServicePath =
    "/run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc";
inline constexpr const char* kDefaultConfigPath =
    "/run/qubes/rpc-config:/usr/local/etc/qubes/rpc-config:/etc/qubes/rpc-config";
inline constexpr size_t kMaxLookupPath = 1024; // upstream's path buffer, incl. NUL

// Directories searched for services and rpc-config files.
struct SearchPaths {
    std::vector<std::string> service_dirs;
    std::vector<std::string> config_dirs;

    // From QREXEC_SERVICE_PATH / QUBES_RPC_CONFIG_PATH (defaults when unset).
    static SearchPaths from_environment();
};

// Splits a colon-separated directory list; empty components are skipped.
std::vector<std::string> split_path_list(std::string_view list);

enum class LookupStatus { NotFound, Error, Found };

struct FindResult {
    LookupStatus status = LookupStatus::NotFound;
    std::string path;       // dir/name (the symlink's own path for symlinks)
    struct stat st {};      // attributes (of the symlink target when followed)
    bool is_tcp = false;    // a symlink to /dev/tcp[/...] (service lookup only)
    std::string tcp_target; // that symlink's target text
    int error_number = 0;   // errno for LookupStatus::Error (0: a non-errno error)
};

enum class LookupMode {
    Service, // "/dev/tcp" symlinks are TCP services (not followed)
    Config,  // symlinks are simply followed
};

// find(path_list, name) of AGENT.md §4.1.
FindResult find(const std::vector<std::string>& dirs, std::string_view name, LookupMode mode);

enum class ServiceKind { Executable, Socket, Tcp, Other };

struct ServiceLookup {
    LookupStatus status = LookupStatus::NotFound;
    ServiceKind kind = ServiceKind::Other;
    std::string path;
    std::string tcp_target; // for ServiceKind::Tcp
};

// "SERVICE+ARG" in every directory first, then "SERVICE" (only if absent).
ServiceLookup find_service(const std::vector<std::string>& service_dirs,
                           const ParsedCommand& command);

// Classifies a found entry (AGENT.md §4.2 order: socket, TCP, executable, other).
ServiceKind classify(const FindResult& found);

} // namespace qrexec::services
