#include "protocol/messages.h"

#include "protocol/wire_reader.h"

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

namespace {
// Only ever called on buffers this file sized itself.
void store_u32(std::span<std::byte> bytes, size_t offset, uint32_t value) {
    std::memcpy(bytes.subspan(offset, sizeof value).data(), &value, sizeof value);
}
} // namespace

HeaderBytes encode_header(Header header) {
    HeaderBytes bytes{};
    store_u32(bytes, 0, header.type);
    store_u32(bytes, 4, header.len);
    return bytes;
}

Header decode_header(std::span<const std::byte, kHeaderSize> bytes) {
    // The extent guarantees both reads succeed.
    WireReader reader(bytes);
    Header header;
    header.type = reader.u32().value_or(0);
    header.len = reader.u32().value_or(0);
    return header;
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
    WireReader reader(payload);
    auto version = reader.u32();
    if (!version || !reader.expect_end()) return std::nullopt;
    return version;
}

std::vector<std::byte> encode_exec_params(ExecParams params, std::span<const std::byte> body) {
    std::vector<std::byte> payload(kExecParamsSize + body.size());
    store_u32(payload, 0, params.connect_domain);
    store_u32(payload, 4, params.connect_port);
    std::copy(body.begin(), body.end(), payload.begin() + kExecParamsSize);
    return payload;
}

std::optional<ExecParams> decode_exec_params(std::span<const std::byte> payload) {
    WireReader reader(payload);
    auto domain = reader.u32();
    auto port = reader.u32();
    if (!domain || !port) return std::nullopt;
    return ExecParams{*domain, *port};
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
    auto layout = trigger_layout(request.type).value_or(*trigger_layout(MSG_TRIGGER_SERVICE4));
    auto name = as_bytes(request.service_name);
    std::vector<std::byte> payload(layout.fixed_size);
    auto field = [&payload](WireField f) {
        return std::span<std::byte>(payload).subspan(f.offset, f.size);
    };
    if (layout.source) put_fixed_string(field(*layout.source), request.source_domain);
    put_fixed_string(field(layout.target), request.target_domain);
    std::copy(request.ident.begin(), request.ident.end(), field(layout.ident).begin());
    if (layout.fixed_service) {
        put_fixed_string(field(*layout.fixed_service), request.service_name);
    } else {
        payload.insert(payload.end(), name.begin(), name.end());
        payload.push_back(std::byte{0});
    }
    return payload;
}

bool set_trigger_ident(uint32_t type, std::span<std::byte> payload, const Ident& ident) {
    auto layout = trigger_layout(type);
    if (!layout || payload.size() < layout->fixed_size) return false;
    std::copy(ident.begin(), ident.end(),
              payload.subspan(layout->ident.offset, kIdentSize).begin());
    return true;
}

std::array<std::byte, 4> encode_exit_code(int32_t code) {
    std::array<std::byte, 4> bytes{};
    std::memcpy(bytes.data(), &code, 4);
    return bytes;
}

int32_t decode_exit_code(std::span<const std::byte> payload) {
    return WireReader(payload).i32().value_or(255);
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

ForkServerHeader
decode_fork_server_header(std::span<const std::byte, kForkServerHeaderSize> bytes) {
    // The extent guarantees every read succeeds.
    WireReader reader(bytes);
    ForkServerHeader header;
    header.type = reader.i32().value_or(0);
    header.connect_domain = reader.i32().value_or(0);
    header.connect_port = reader.i32().value_or(0);
    header.cmdline_len = reader.u32().value_or(0);
    return header;
}

} // namespace qrexec::protocol
