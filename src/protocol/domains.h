// Facts about domain names shared by every room: the one answer to "is this dom0?".
#pragma once

#include <string_view>

namespace qrexec::protocol {

inline constexpr std::string_view kDom0Uuid = "00000000-0000-0000-0000-000000000000";

// dom0 by name, by the @adminvm keyword or by its uuid ("uuid:<dom0 uuid>").
constexpr bool is_dom0(std::string_view name) {
    return name == "dom0" || name == "@adminvm" ||
           (name.starts_with("uuid:") && name.substr(5) == kDom0Uuid);
}

} // namespace qrexec::protocol
