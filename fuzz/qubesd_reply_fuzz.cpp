// libFuzzer target for what qubesd answers: the reply parser (protocol/qubesd.h)
// and the check of the name CreateDisposable returns (qubesd/disposable.h).
// Input: 1 byte (bit 0: the uuid form was asked for), then the reply bytes.
// Checks the parse against the wire format and the name check against an
// independent statement of qubesd's naming rule.
#include "fuzz_util.h"
#include "protocol/qubesd.h"
#include "qubesd/disposable.h"
#include "qubesd/names.h"

#include <cstdint>
#include <string>
#include <string_view>

using qrexec::fuzz::require;

namespace {

// qubesd's rule, written out independently of qubesd/names.cpp.
bool independent_vm_name(std::string_view s) {
    if (s.empty() || s.size() > 31) return false;
    auto letter = [](char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; };
    if (!letter(s[0])) return false;
    for (char c : s)
        if (!letter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '.' && c != '-') return false;
    if (s == "none" || s == "default") return false;
    return s.size() < 3 || s.substr(s.size() - 3) != "-dm";
}

bool independent_uuid(std::string_view s) {
    if (s.size() != 41 || s.substr(0, 5) != "uuid:") return false;
    for (size_t i = 5; i < s.size(); ++i) {
        char c = s[i];
        bool dash = i == 13 || i == 18 || i == 23 || i == 28;
        if (dash != (c == '-')) return false;
        if (!dash && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    bool uuid_form = data[0] & 1;
    std::string_view reply(reinterpret_cast<const char*>(data + 1), size - 1);
    auto parsed = qrexec::protocol::parse_qubesd_reply(reply);
    bool ok_prefix = reply.size() >= 2 && reply[0] == '0' && reply[1] == '\0';
    bool error_prefix = reply.size() >= 2 && reply[0] == '2' && reply[1] == '\0';
    require(parsed.ok == ok_prefix);
    require(parsed.malformed == !(ok_prefix || error_prefix));
    if (parsed.ok) {
        std::string_view rest = reply.substr(2);
        require(parsed.value == rest.substr(0, rest.find('\0')));
    } else if (!parsed.malformed) {
        std::string_view rest = reply.substr(2);
        require(parsed.exception_type == rest.substr(0, rest.find('\0')));
    }
    // The name check, on whatever value came back (even from a malformed reply).
    std::string value = parsed.ok ? parsed.value : std::string(reply);
    bool accepted = !qrexec::qubesd::created_name_problem(value, uuid_form);
    require(accepted == (uuid_form ? independent_uuid(value) : independent_vm_name(value)));
    require(qrexec::qubesd::is_vm_name(value) == independent_vm_name(value));
    require(qrexec::qubesd::is_vm_uuid(value) == independent_uuid(value));
    if (accepted) require(value.find('/') == std::string::npos && value.front() != '-');
    return 0;
}
