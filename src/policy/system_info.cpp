#include "policy/system_info.h"

#include "policy/loader.h"
#include "qubesd/client.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qrexec::policy {

namespace {

// Upper bound for a system-info document (qubesd reply or file): far above any real
// system, small enough that a runaway file cannot exhaust memory.
constexpr size_t kMaxSystemInfoSize = 64 * 1024 * 1024;

using nlohmann::json;

std::optional<std::string> optional_string(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    throw std::runtime_error(std::string("field '") + key + "' is not a string");
}

bool optional_bool(const json& obj, const char* key, bool fallback) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (it->is_boolean()) return it->get<bool>();
    throw std::runtime_error(std::string("field '") + key + "' is not a boolean");
}

Domain parse_domain(const std::string& name, const json& obj) {
    if (!obj.is_object()) throw std::runtime_error("domain '" + name + "' is not an object");
    Domain d;
    d.name = name;
    d.uuid = optional_string(obj, "uuid").value_or("");
    if (d.uuid.empty() && name == "dom0") d.uuid = std::string(kDom0Uuid);
    d.type = optional_string(obj, "type").value_or("AppVM");
    if (auto it = obj.find("tags"); it != obj.end() && !it->is_null()) {
        if (!it->is_array()) throw std::runtime_error("tags of '" + name + "' is not a list");
        for (const auto& tag : *it) {
            if (!tag.is_string())
                throw std::runtime_error("a tag of '" + name + "' is not a string");
            d.tags.push_back(tag.get<std::string>());
        }
    }
    d.default_dispvm = optional_string(obj, "default_dispvm");
    if (d.default_dispvm && d.default_dispvm->empty()) d.default_dispvm.reset();
    d.template_for_dispvms = optional_bool(obj, "template_for_dispvms", false);
    d.power_state = optional_string(obj, "power_state").value_or("Halted");
    d.guivm = optional_string(obj, "guivm");
    if (d.guivm && d.guivm->empty()) d.guivm.reset();
    d.icon = optional_string(obj, "icon");
    d.label = optional_string(obj, "label");
    d.relayvm = optional_string(obj, "relayvm");
    d.transport_rpc = optional_string(obj, "transport_rpc");
    d.internal = optional_bool(obj, "internal", false);
    return d;
}

} // namespace

bool Domain::has_tag(std::string_view tag) const {
    return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

void SystemInfo::add(Domain domain) {
    if (!domain.uuid.empty()) by_uuid_[domain.uuid] = domain.name;
    std::string name = domain.name;
    domains_.insert_or_assign(std::move(name), std::move(domain));
}

const Domain* SystemInfo::find(std::string_view name_or_uuid) const {
    if (name_or_uuid.starts_with("uuid:")) {
        auto it = by_uuid_.find(std::string(name_or_uuid.substr(5)));
        if (it == by_uuid_.end()) return nullptr;
        name_or_uuid = it->second;
    }
    auto it = domains_.find(name_or_uuid);
    return it == domains_.end() ? nullptr : &it->second;
}

std::optional<SystemInfo> parse_system_info(std::string_view text, std::string* error) {
    try {
        json doc = json::parse(text.begin(), text.end());
        if (!doc.is_object()) throw std::runtime_error("top level is not an object");
        auto domains = doc.find("domains");
        if (domains == doc.end() || !domains->is_object())
            throw std::runtime_error("missing 'domains' object");
        SystemInfo info;
        for (const auto& [name, value] : domains->items()) {
            if (name.empty()) throw std::runtime_error("empty domain name");
            info.add(parse_domain(name, value));
        }
        return info;
    } catch (const std::exception& e) {
        if (error) *error = std::string("invalid system info: ") + e.what();
        return std::nullopt;
    }
}

std::optional<SystemInfo> load_system_info_file(const std::string& path, std::string* error) {
    auto text = read_file_bounded(path, kMaxSystemInfoSize, "system info file ", error);
    if (!text) return std::nullopt;
    return parse_system_info(*text, error);
}

std::optional<SystemInfo> fetch_system_info_qubesd(const std::string& socket_path,
                                                   std::string* error) {
    auto reply = qubesd::call(socket_path, "internal.GetSystemInfo", "dom0", "",
                              qubesd::kDefaultTimeout, kMaxSystemInfoSize);
    if (!reply.ok) {
        if (error) *error = "cannot get system info from qubesd: " + reply.error;
        return std::nullopt;
    }
    return parse_system_info(reply.value, error);
}

std::string system_info_file_from_option_or_env(const std::string& option) {
    if (!option.empty()) return option;
    if (const char* env = std::getenv("QREXEC_SYSTEM_INFO"); env && *env) return env;
    return {};
}

std::string qubesd_internal_socket_from_env() {
    const char* env = std::getenv("QREXEC_QUBESD_INTERNAL_SOCKET");
    return env && *env ? env : kQubesdInternalSocket;
}

} // namespace qrexec::policy
