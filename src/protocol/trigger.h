// Pure validation of what an agent may send to its daemon on the control vchan
// (PROTOCOL.md §6.3): header-level checks (violations make the daemon exit),
// TRIGGER_SERVICE / 3 / 4 decoding, field sanitising, ident and service-name
// rules. No I/O, so the whole file is unit-tested and fuzzed.
#pragma once

#include "protocol/messages.h"

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace qrexec::protocol {

// Header-level check of an agent->daemon message, done before waiting for the
// body (so a hostile length is rejected without buffering it). Returns the
// reason when the header is fatal (the daemon then exits 1).
std::optional<std::string> check_agent_header(Header header, uint32_t negotiated_version);

// Characters kept by sanitising; every other byte becomes '_'.
inline constexpr std::string_view kDomainExtraChars = "@:";
inline constexpr std::string_view kServiceExtraChars = "+";
bool is_safe_name_char(char c, std::string_view extra);
std::string sanitize_name(std::string_view text, std::string_view extra);

// A fixed string field: the last byte is treated as NUL (silent truncation),
// the text is what precedes the first NUL.
std::string_view fixed_field_text(std::span<const std::byte> field);

// ident[32]: bytes before the first NUL in [0-9A-Za-z_.- ], a NUL exists, and
// every byte after it is NUL. An empty ident is valid.
bool is_valid_ident(std::span<const std::byte> ident);
// Text of an ident up to its first NUL (at most 32 bytes).
std::string ident_text(const Ident& ident);

// Service name rule for all versions: non-empty and not starting with '+'.
bool is_acceptable_service_name(std::string_view name);

class ValidTrigger;
struct TriggerDecode;
TriggerDecode decode_trigger(uint32_t type, std::span<const std::byte> untrusted_payload);

// A TRIGGER that decode_trigger accepted. Only the decoder can make one (its
// constructor takes a key only the decoder can create), and nobody can change
// it afterwards: holding a ValidTrigger means the request was validated.
class ValidTrigger {
  public:
    class Key {
        Key() = default;
        friend TriggerDecode decode_trigger(uint32_t, std::span<const std::byte>);
    };
    ValidTrigger(Key, uint32_t type_, std::optional<std::string> requested_source_,
                 std::string target_, std::string service_, const Ident& ident_)
        : type(type_), requested_source(std::move(requested_source_)), target(std::move(target_)),
          service(std::move(service_)), ident(ident_) {}

    const uint32_t type;
    // v4 only (the source_domain field, possibly empty); absent for v2/v3.
    const std::optional<std::string> requested_source;
    const std::string target;  // sanitised, may be empty
    const std::string service; // sanitised "svc[+arg]", non-empty
    const Ident ident;
};

struct TriggerDecode {
    // The raw ident exactly as received; always filled (echoed in REFUSED).
    Ident ident{};
    std::optional<ValidTrigger> valid;
    std::string error; // set when !valid: why the request is refused
};

// Decodes a TRIGGER_SERVICE / 3 / 4 payload (payload.size() == header.len,
// header already accepted by check_agent_header); total on any input.
TriggerDecode decode_trigger(uint32_t type, std::span<const std::byte> untrusted_payload);

} // namespace qrexec::protocol
