// System information (qubesd internal.GetSystemInfo): the VMs the policy talks about.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qrexec::policy {

inline constexpr std::string_view kDom0Uuid = "00000000-0000-0000-0000-000000000000";

struct Domain {
    std::string name;
    std::string uuid;
    std::string type = "AppVM";
    std::vector<std::string> tags;
    std::optional<std::string> default_dispvm;
    bool template_for_dispvms = false;
    std::string power_state = "Halted";
    std::optional<std::string> guivm;
    std::optional<std::string> icon;
    std::optional<std::string> label;
    std::optional<std::string> relayvm;
    std::optional<std::string> transport_rpc;
    bool internal = false;

    bool has_tag(std::string_view tag) const;
    bool running() const { return power_state == "Running"; }
};

class SystemInfo {
  public:
    using DomainMap = std::map<std::string, Domain, std::less<>>;
    void add(Domain domain);
    // By name, or by "uuid:<uuid>". Keywords (@...) never resolve.
    const Domain* find(std::string_view name_or_uuid) const;
    const DomainMap& domains() const { return domains_; }

  private:
    DomainMap domains_;
    std::unordered_map<std::string, std::string> by_uuid_;
};

// Parses `{"domains": {NAME: {...}}}`. Unknown fields are ignored, missing ones take
// defaults; a wrong shape is an error (message in *error).
std::optional<SystemInfo> parse_system_info(std::string_view json, std::string* error);

// Reads a JSON file of that shape.
std::optional<SystemInfo> load_system_info_file(const std::string& path, std::string* error);

// Asks qubesd (internal.GetSystemInfo over its internal socket).
inline constexpr const char* kQubesdInternalSocket = "/var/run/qubesd.internal.sock";
std::optional<SystemInfo> fetch_system_info_qubesd(const std::string& socket_path,
                                                   std::string* error);

// The system-info file named by `option` if non-empty, else $QREXEC_SYSTEM_INFO; ""
// means qubesd.
std::string system_info_file_from_option_or_env(const std::string& option);
// $QREXEC_QUBESD_INTERNAL_SOCKET (tests), else kQubesdInternalSocket.
std::string qubesd_internal_socket_from_env();

} // namespace qrexec::policy
