#include "protocol/requests.h"

#include "protocol/wire_reader.h"

#include <charconv>
#include <string>

namespace qrexec::protocol {
namespace {

// Params, then a body whose last byte counts as NUL; text up to the first NUL.
struct ParamsAndText {
    ExecParams params;
    std::string_view text;
};

std::optional<ParamsAndText> params_and_forced_text(std::span<const std::byte> untrusted_payload) {
    WireReader reader(untrusted_payload);
    auto domain = reader.u32();
    auto port = reader.u32();
    if (!domain || !port || reader.remaining() == 0) return std::nullopt;
    auto text = reader.fixed_text(reader.remaining());
    if (!text) return std::nullopt;
    return ParamsAndText{{*domain, *port}, *text};
}

} // namespace

std::optional<ExecRequest> decode_exec_request(std::span<const std::byte> untrusted_payload) {
    auto decoded = params_and_forced_text(untrusted_payload);
    if (!decoded) return std::nullopt;
    return ExecRequest{decoded->params, decoded->text};
}

std::optional<ServiceConnect> decode_service_connect(std::span<const std::byte> untrusted_payload) {
    auto decoded = params_and_forced_text(untrusted_payload);
    if (!decoded) return std::nullopt;
    return ServiceConnect{decoded->params, decoded->text};
}

std::optional<std::string_view>
decode_service_refused(std::span<const std::byte> untrusted_payload) {
    if (untrusted_payload.size() != kIdentSize) return std::nullopt;
    return get_fixed_string(untrusted_payload);
}

Ident make_socket_ident(int fd) {
    return make_ident("SOCKET" + std::to_string(fd));
}

std::optional<int> parse_socket_ident(std::string_view ident) {
    constexpr std::string_view prefix = "SOCKET";
    if (!ident.starts_with(prefix)) return std::nullopt;
    auto digits = ident.substr(prefix.size());
    // No sign, no leading zero (except "0"), at most 9 digits: one text per fd.
    if (digits.empty() || digits.size() > 9) return std::nullopt;
    if (digits.size() > 1 && digits.front() == '0') return std::nullopt;
    int value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    return value;
}

bool is_local_trigger_header(Header header) {
    return header.type == MSG_TRIGGER_SERVICE4 && header.len > kTrigger4FixedSize &&
           header.len - kTrigger4FixedSize <= kMaxServiceNameLen;
}

bool is_client_command_header(Header header) {
    bool type_ok = header.type == MSG_EXEC_CMDLINE || header.type == MSG_JUST_EXEC ||
                   header.type == MSG_SERVICE_CONNECT;
    return type_ok && header.len > kExecParamsSize && header.len <= kMaxQrexecCmdLen;
}

std::optional<ClientCommand> decode_client_command(Header header,
                                                   std::span<const std::byte> untrusted_payload) {
    if (!is_client_command_header(header) || untrusted_payload.size() != header.len)
        return std::nullopt;
    WireReader reader(untrusted_payload);
    auto domain = reader.u32();
    auto port = reader.u32();
    auto body = reader.rest();
    if (!domain || !port || body.empty() || body.back() != std::byte{0}) return std::nullopt;
    return ClientCommand{header.type, {*domain, *port}, body, as_text(body.first(body.size() - 1))};
}

} // namespace qrexec::protocol
