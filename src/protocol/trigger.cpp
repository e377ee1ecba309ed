#include "protocol/trigger.h"

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

// Variable-length service name of TRIGGER3/4: NUL exactly at the last byte.
std::optional<std::string_view> variable_service_name(std::span<const std::byte> area) {
    if (area.empty() || area.back() != std::byte{0}) return std::nullopt;
    auto text = as_text(area.first(area.size() - 1));
    if (text.find('\0') != std::string_view::npos) return std::nullopt;
    return text;
}

} // namespace

TriggerDecode decode_trigger(uint32_t type, std::span<const std::byte> payload) {
    TriggerDecode result;
    size_t ident_offset = 0;
    size_t fixed = 0;
    switch (type) {
    case MSG_TRIGGER_SERVICE:
        ident_offset = 96;
        fixed = kTrigger2Size;
        break;
    case MSG_TRIGGER_SERVICE3:
        ident_offset = 64;
        fixed = kTrigger3FixedSize;
        break;
    case MSG_TRIGGER_SERVICE4:
        ident_offset = 128;
        fixed = kTrigger4FixedSize;
        break;
    default:
        result.error = "not a trigger message: " + hex(type);
        return result;
    }
    if (payload.size() < fixed || (type == MSG_TRIGGER_SERVICE && payload.size() != fixed)) {
        // Unreachable after check_agent_header; kept so the decoder is total.
        result.error = "trigger payload of invalid size " + std::to_string(payload.size());
        return result;
    }
    std::memcpy(result.ident.data(), payload.data() + ident_offset, kIdentSize);

    ValidTrigger trigger;
    trigger.type = type;
    trigger.ident = result.ident;
    std::string_view raw_service;
    if (type == MSG_TRIGGER_SERVICE) {
        raw_service = fixed_field_text(payload.subspan(0, 64));
        trigger.target =
            sanitize_name(fixed_field_text(payload.subspan(64, 32)), kDomainExtraChars);
    } else {
        size_t target_offset = type == MSG_TRIGGER_SERVICE4 ? 64 : 0;
        if (type == MSG_TRIGGER_SERVICE4)
            trigger.requested_source =
                sanitize_name(fixed_field_text(payload.subspan(0, 64)), kDomainExtraChars);
        trigger.target =
            sanitize_name(fixed_field_text(payload.subspan(target_offset, 64)), kDomainExtraChars);
        auto name = variable_service_name(payload.subspan(fixed));
        if (!name) {
            result.error = "service name not NUL-terminated exactly at its end";
            return result;
        }
        raw_service = *name;
    }
    if (!is_valid_ident(result.ident)) {
        result.error = "invalid request id";
        return result;
    }
    if (!is_acceptable_service_name(raw_service)) {
        result.error = raw_service.empty() ? "empty service name" : "service name starts with '+'";
        return result;
    }
    trigger.service = sanitize_name(raw_service, kServiceExtraChars);
    result.valid = std::move(trigger);
    return result;
}

} // namespace qrexec::protocol
