#include "qubesd/names.h"

namespace qrexec::qubesd {

namespace {

constexpr size_t kUuidLength = 36;

bool is_ascii_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_ascii_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_name_char(char c) {
    return is_ascii_letter(c) || is_ascii_digit(c) || c == '_' || c == '.' || c == '-';
}

bool is_lower_hex(char c) {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'f');
}

} // namespace

bool is_vm_name(std::string_view name) {
    if (name.empty() || name.size() > kMaxVmNameLength) return false;
    if (!is_ascii_letter(name.front())) return false;
    for (char c : name)
        if (!is_name_char(c)) return false;
    return name != "none" && name != "default" && !name.ends_with("-dm");
}

bool is_vm_uuid(std::string_view name) {
    if (!name.starts_with(kUuidPrefix)) return false;
    std::string_view uuid = name.substr(kUuidPrefix.size());
    if (uuid.size() != kUuidLength) return false;
    for (size_t i = 0; i < uuid.size(); ++i) {
        bool dash_here = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash_here ? uuid[i] != '-' : !is_lower_hex(uuid[i])) return false;
    }
    return true;
}

std::optional<std::string> vm_reference_problem(std::string_view name) {
    if (name.starts_with(kUuidPrefix)) {
        if (is_vm_uuid(name)) return std::nullopt;
        return "not uuid: and a canonical lower-case UUID";
    }
    if (is_vm_name(name)) return std::nullopt;
    if (name.empty()) return "empty";
    if (name.size() > kMaxVmNameLength) return "longer than 31 characters";
    return "not a VM name (a letter, then letters, digits, '_', '.', '-'; not none, default "
           "or *-dm)";
}

} // namespace qrexec::qubesd
