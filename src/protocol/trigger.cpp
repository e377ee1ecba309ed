#include "protocol/trigger.h"

#include "protocol/wire_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace qrexec::protocol {
namespace {

// protocol has no fmt dependency; these messages are tiny.
std::string hex(uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%x", value);
    return text;
}

std::string str(std::string_view text) {
    return std::string(text);
}

} // namespace

std::optional<std::string> check_agent_header(Header header, uint32_t negotiated_version) {
    switch (header.type) {
    case MSG_TRIGGER_SERVICE:
        if (negotiated_version >= 3)
            return "MSG_TRIGGER_SERVICE not allowed with protocol version " +
                   std::to_string(negotiated_version);
        if (header.len != kTrigger2Size)
            return "MSG_TRIGGER_SERVICE with invalid length " + std::to_string(header.len);
        return std::nullopt;
    case MSG_TRIGGER_SERVICE3:
    case MSG_TRIGGER_SERVICE4: {
        bool v4 = header.type == MSG_TRIGGER_SERVICE4;
        uint32_t needed = v4 ? 4 : 3;
        size_t fixed = v4 ? kTrigger4FixedSize : kTrigger3FixedSize;
        if (negotiated_version < needed)
            return str(msg_type_name(header.type)) + " not allowed with protocol version " +
                   std::to_string(negotiated_version);
        if (header.len <= fixed || header.len - fixed > kMaxServiceNameLen)
            return str(msg_type_name(header.type)) + " with invalid length " +
                   std::to_string(header.len);
        return std::nullopt;
    }
    case MSG_CONNECTION_TERMINATED:
        if (header.len != kExecParamsSize)
            return "MSG_CONNECTION_TERMINATED with invalid length " + std::to_string(header.len);
        return std::nullopt;
    default:
        return "unexpected message type " + hex(header.type) + " (len " +
               std::to_string(header.len) + ") from the agent";
    }
}

bool is_safe_name_char(char c, std::string_view extra) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    if (c == '_' || c == '.' || c == '-') return true;
    return c != '\0' && extra.find(c) != std::string_view::npos;
}

std::string sanitize_name(std::string_view text, std::string_view extra) {
    std::string out(text);
    for (char& c : out)
        if (!is_safe_name_char(c, extra)) c = '_';
    return out;
}

std::string_view fixed_field_text(std::span<const std::byte> field) {
    if (field.empty()) return {};
    // The last byte counts as NUL whatever it holds.
    return get_fixed_string(field.first(field.size() - 1));
}

bool is_valid_ident(std::span<const std::byte> ident) {
    size_t i = 0;
    for (; i < ident.size(); ++i) {
        char c = static_cast<char>(ident[i]);
        if (c == '\0') break;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-' || c == ' ';
        if (!ok) return false;
    }
    if (i == ident.size()) return false; // no NUL at all
    return std::all_of(ident.begin() + static_cast<ptrdiff_t>(i), ident.end(),
                       [](std::byte b) { return b == std::byte{0}; });
}

std::string ident_text(const Ident& ident) {
    return std::string(get_fixed_string(ident));
}

bool is_acceptable_service_name(std::string_view name) {
    return !name.empty() && name.front() != '+';
}

namespace {

// The bytes of one field of the payload; nullopt if the payload is too short.
std::optional<std::span<const std::byte>> field_bytes(std::span<const std::byte> payload,
                                                      WireField field) {
    WireReader reader(payload);
    if (!reader.bytes(field.offset)) return std::nullopt;
    return reader.bytes(field.size);
}

std::string domain_field(std::span<const std::byte> payload, WireField field) {
    auto bytes = field_bytes(payload, field);
    return bytes ? sanitize_name(fixed_field_text(*bytes), kDomainExtraChars) : std::string();
}

} // namespace

TriggerDecode decode_trigger(uint32_t type, std::span<const std::byte> untrusted_payload) {
    TriggerDecode result;
    auto layout = trigger_layout(type);
    if (!layout) {
        result.error = "not a trigger message: " + hex(type);
        return result;
    }
    bool exact = type == MSG_TRIGGER_SERVICE;
    if (untrusted_payload.size() < layout->fixed_size ||
        (exact && untrusted_payload.size() != layout->fixed_size)) {
        // Unreachable after check_agent_header; kept so the decoder is total.
        result.error =
            "trigger payload of invalid size " + std::to_string(untrusted_payload.size());
        return result;
    }
    auto raw_ident = field_bytes(untrusted_payload, layout->ident);
    std::copy(raw_ident->begin(), raw_ident->end(), result.ident.begin());

    std::optional<std::string> requested_source;
    if (layout->source) requested_source = domain_field(untrusted_payload, *layout->source);
    std::string target = domain_field(untrusted_payload, layout->target);

    std::string_view untrusted_service;
    if (layout->fixed_service) {
        untrusted_service =
            fixed_field_text(*field_bytes(untrusted_payload, *layout->fixed_service));
    } else {
        WireReader reader(untrusted_payload.subspan(layout->fixed_size));
        auto name = reader.rest_as_nul_terminated(kMaxServiceNameLen);
        if (!name) {
            result.error = "service name: " + str(read_error_text(reader.error()));
            return result;
        }
        untrusted_service = *name;
    }
    if (!is_valid_ident(result.ident)) {
        result.error = "invalid request id";
        return result;
    }
    if (!is_acceptable_service_name(untrusted_service)) {
        result.error =
            untrusted_service.empty() ? "empty service name" : "service name starts with '+'";
        return result;
    }
    result.valid.emplace(ValidTrigger::Key{}, type, std::move(requested_source), std::move(target),
                         sanitize_name(untrusted_service, kServiceExtraChars), result.ident);
    return result;
}

} // namespace qrexec::protocol
