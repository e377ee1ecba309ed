// libFuzzer target for the daemon's agent-message validation (PROTOCOL.md §6.3).
// Input: 1 byte negotiated version selector, then an agent message (header +
// payload). Checks the invariants the daemon relies on.
#include "protocol/trigger.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>

using namespace qrexec::protocol;

namespace {
void require(bool condition) {
    if (!condition) std::abort();
}

bool all_safe(const std::string& text, std::string_view extra) {
    for (char c : text)
        if (!is_safe_name_char(c, extra)) return false;
    return true;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 + kHeaderSize) return 0;
    uint32_t version = 2 + data[0] % 3;
    auto bytes = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data + 1), size - 1);
    Header header = decode_header(bytes.first<kHeaderSize>());
    auto payload = bytes.subspan(kHeaderSize);

    // The decoder must be total, whatever the header says.
    (void)decode_trigger(header.type, payload);

    if (check_agent_header(header, version)) return 0;
    if (header.type == MSG_CONNECTION_TERMINATED) return 0;
    require(header.len <= kTrigger4FixedSize + kMaxServiceNameLen);
    if (payload.size() != header.len) return 0;
    auto result = decode_trigger(header.type, payload);
    if (result.valid) {
        require(is_valid_ident(result.ident));
        require(is_acceptable_service_name(result.valid->service));
        require(all_safe(result.valid->service, kServiceExtraChars));
        require(all_safe(result.valid->target, kDomainExtraChars));
        require(result.valid->target.size() < kDomainFieldSize);
        if (result.valid->requested_source)
            require(all_safe(*result.valid->requested_source, kDomainExtraChars));
        require(result.valid->requested_source.has_value() ==
                (header.type == MSG_TRIGGER_SERVICE4));
        // Round trip: what the decoder accepted, encoded again with the shared
        // layout table, decodes to the same request.
        const auto& valid = *result.valid;
        TriggerRequest again;
        again.type = valid.type;
        again.source_domain = valid.requested_source.value_or("");
        again.target_domain = valid.target;
        again.ident = valid.ident;
        again.service_name = valid.service;
        auto encoded = encode_trigger(again);
        require(encoded.size() == payload.size());
        auto redecoded = decode_trigger(header.type, encoded);
        require(redecoded.valid && redecoded.valid->service == valid.service &&
                redecoded.valid->target == valid.target &&
                redecoded.valid->requested_source == valid.requested_source &&
                redecoded.valid->ident == valid.ident);
    } else {
        require(!result.error.empty());
    }
    // The ident echoed in a refusal is the one received, byte for byte.
    auto raw_ident = payload.subspan(trigger_layout(header.type)->ident.offset, kIdentSize);
    require(std::equal(raw_ident.begin(), raw_ident.end(), result.ident.begin()));
    return 0;
}
