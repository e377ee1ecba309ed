#include "protocol/messages.h"

#include <algorithm>

namespace qrexec::protocol {

std::string_view msg_type_name(uint32_t type) {
    switch (type) {
    case MSG_DATA_STDIN: return "MSG_DATA_STDIN";
    case MSG_DATA_STDOUT: return "MSG_DATA_STDOUT";
    case MSG_DATA_STDERR: return "MSG_DATA_STDERR";
    case MSG_DATA_EXIT_CODE: return "MSG_DATA_EXIT_CODE";
    case MSG_EXEC_CMDLINE: return "MSG_EXEC_CMDLINE";
    case MSG_JUST_EXEC: return "MSG_JUST_EXEC";
    case MSG_SERVICE_CONNECT: return "MSG_SERVICE_CONNECT";
    case MSG_SERVICE_REFUSED: return "MSG_SERVICE_REFUSED";
    case MSG_TRIGGER_SERVICE: return "MSG_TRIGGER_SERVICE";
    case MSG_CONNECTION_TERMINATED: return "MSG_CONNECTION_TERMINATED";
    case MSG_TRIGGER_SERVICE3: return "MSG_TRIGGER_SERVICE3";
    case MSG_TRIGGER_SERVICE4: return "MSG_TRIGGER_SERVICE4";
    case MSG_HELLO: return "MSG_HELLO";
    default: return "unknown";
    }
}

uint32_t load_u32(std::span<const std::byte> bytes, size_t offset) {
    uint32_t value = 0;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

void store_u32(std::span<std::byte> bytes, size_t offset, uint32_t value) {
    std::memcpy(bytes.data() + offset, &value, sizeof value);
}

HeaderBytes encode_header(Header header) {
    HeaderBytes bytes{};
    store_u32(bytes, 0, header.type);
    store_u32(bytes, 4, header.len);
    return bytes;
}

Header decode_header(std::span<const std::byte, kHeaderSize> bytes) {
    return Header{load_u32(bytes, 0), load_u32(bytes, 4)};
}

std::vector<std::byte> encode_frame(uint32_t type, std::span<const std::byte> payload) {
    std::vector<std::byte> frame(kHeaderSize + payload.size());
    auto header = encode_header({type, static_cast<uint32_t>(payload.size())});
    std::copy(header.begin(), header.end(), frame.begin());
    std::copy(payload.begin(), payload.end(), frame.begin() + kHeaderSize);
    return frame;
}

std::span<const std::byte> as_bytes(std::string_view text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::vector<std::byte> encode_hello(uint32_t version) {
    std::vector<std::byte> payload(4);
    store_u32(payload, 0, version);
    return payload;
}

std::optional<uint32_t> decode_hello(std::span<const std::byte> payload) {
    if (payload.size() != 4) return std::nullopt;
    return load_u32(payload, 0);
}

std::vector<std::byte> encode_exec_params(ExecParams params, std::span<const std::byte> body) {
    std::vector<std::byte> payload(kExecParamsSize + body.size());
    store_u32(payload, 0, params.connect_domain);
    store_u32(payload, 4, params.connect_port);
    std::copy(body.begin(), body.end(), payload.begin() + kExecParamsSize);
    return payload;
}

std::optional<ExecParams> decode_exec_params(std::span<const std::byte> payload) {
    if (payload.size() < kExecParamsSize) return std::nullopt;
    return ExecParams{load_u32(payload, 0), load_u32(payload, 4)};
}

void put_fixed_string(std::span<std::byte> field, std::string_view text) {
    std::fill(field.begin(), field.end(), std::byte{0});
    if (field.empty()) return;
    size_t n = std::min(text.size(), field.size() - 1);
    std::memcpy(field.data(), text.data(), n);
}

std::string_view get_fixed_string(std::span<const std::byte> field) {
    auto text = as_text(field);
    auto nul = text.find('\0');
    return nul == std::string_view::npos ? text : text.substr(0, nul);
}

Ident make_ident(std::string_view text) {
    Ident ident{};
    put_fixed_string(ident, text);
    return ident;
}

std::vector<std::byte> encode_trigger(const TriggerRequest& request) {
    std::vector<std::byte> payload;
    auto name = as_bytes(request.service_name);
    auto span = [&payload](size_t off, size_t len) {
        return std::span<std::byte>(payload).subspan(off, len);
    };
    switch (request.type) {
    case MSG_TRIGGER_SERVICE:
        payload.resize(kTrigger2Size);
        put_fixed_string(span(0, 64), request.service_name);
        put_fixed_string(span(64, 32), request.target_domain);
        std::copy(request.ident.begin(), request.ident.end(), payload.begin() + 96);
        break;
    case MSG_TRIGGER_SERVICE3:
        payload.resize(kTrigger3FixedSize + name.size() + 1);
        put_fixed_string(span(0, 64), request.target_domain);
        std::copy(request.ident.begin(), request.ident.end(), payload.begin() + 64);
        std::copy(name.begin(), name.end(), payload.begin() + kTrigger3FixedSize);
        break;
    default:
        payload.resize(kTrigger4FixedSize + name.size() + 1);
        put_fixed_string(span(0, 64), request.source_domain);
        put_fixed_string(span(64, 64), request.target_domain);
        std::copy(request.ident.begin(), request.ident.end(), payload.begin() + 128);
        std::copy(name.begin(), name.end(), payload.begin() + kTrigger4FixedSize);
        break;
    }
    return payload;
}

std::array<std::byte, 4> encode_exit_code(int32_t code) {
    std::array<std::byte, 4> bytes{};
    std::memcpy(bytes.data(), &code, 4);
    return bytes;
}

int32_t decode_exit_code(std::span<const std::byte> payload) {
    if (payload.size() < 4) return 255;
    int32_t code = 0;
    std::memcpy(&code, payload.data(), 4);
    return code;
}

std::vector<std::byte> encode_fork_server_request(const ForkServerRequest& request) {
    std::vector<std::byte> bytes(kForkServerHeaderSize + request.cmdline.size() + 1);
    store_u32(bytes, 0, static_cast<uint32_t>(request.type));
    store_u32(bytes, 4, static_cast<uint32_t>(request.connect_domain));
    store_u32(bytes, 8, static_cast<uint32_t>(request.connect_port));
    store_u32(bytes, 12, static_cast<uint32_t>(request.cmdline.size() + 1));
    std::memcpy(bytes.data() + kForkServerHeaderSize, request.cmdline.data(),
                request.cmdline.size());
    return bytes;
}

} // namespace qrexec::protocol
