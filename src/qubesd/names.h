// The names qrexec hands to qubesd or takes from it: the one check, used
// before every call (a name qubesd would refuse is never sent) and on every
// name qubesd returns (a disposable's).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace qrexec::qubesd {

inline constexpr size_t kMaxVmNameLength = 31;
inline constexpr std::string_view kUuidPrefix = "uuid:";

// A VM name as qubesd allows it: 1..31 ASCII characters, a letter first, then
// letters, digits, '_', '.', '-'; not "none" or "default"; not ending in "-dm"
// (reserved for stub domains).
bool is_vm_name(std::string_view name);

// "uuid:" and a canonical UUID as qubesd writes it: 8-4-4-4-12 lower-case hex.
bool is_vm_uuid(std::string_view name);

// A VM by name or by "uuid:<uuid>"; nullopt when valid, else why not (for the
// log line; the name itself is not in it, the caller escapes and adds it).
std::optional<std::string> vm_reference_problem(std::string_view name);

} // namespace qrexec::qubesd
