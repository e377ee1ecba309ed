// libFuzzer target for what qrexec-agent reads: dom0's control messages
// (EXEC_CMDLINE / JUST_EXEC / SERVICE_CONNECT / SERVICE_REFUSED, cut from the
// control vchan by next_frame) and a qrexec-client-vm request (a
// TRIGGER_SERVICE4 from any local user), which the agent marks with its own
// ident and forwards. Input: 1 selector byte, then the stream.
// Invariants: decoded text stays inside the payload and holds no NUL,
// re-encoding gives back the payload's meaning, socket idents round-trip,
// and a forwarded request still decodes the same way in the daemon.
#include "fuzz_util.h"
#include "protocol/frame.h"
#include "protocol/requests.h"
#include "protocol/trigger.h"

#include <algorithm>
#include <string>
#include <vector>

using namespace qrexec;
using namespace qrexec::protocol;
using fuzz::require;

namespace {

bool inside(std::string_view text, std::span<const std::byte> payload) {
    auto* begin = reinterpret_cast<const char*>(payload.data());
    return text.empty() ||
           (text.data() >= begin && text.data() + text.size() <= begin + payload.size());
}

void check_params_and_text(ExecParams params, std::string_view text,
                           std::span<const std::byte> payload) {
    require(payload.size() > kExecParamsSize);
    require(inside(text, payload));
    require(text.find('\0') == std::string_view::npos);
    require(text.size() < payload.size() - kExecParamsSize);
    // What the agent acts on survives a re-encoding (upstream's rule: the
    // last byte is a NUL, the text ends at the first NUL).
    std::string body(text);
    body.push_back('\0');
    auto again = encode_exec_params(params, as_bytes(body));
    auto decoded = decode_exec_request(again);
    require(decoded && decoded->cmdline == text);
    require(decoded->params.connect_domain == params.connect_domain &&
            decoded->params.connect_port == params.connect_port);
}

void control_message(Header header, std::span<const std::byte> payload) {
    switch (header.type) {
    case MSG_EXEC_CMDLINE:
    case MSG_JUST_EXEC: {
        auto exec = decode_exec_request(payload);
        require(exec.has_value() == (payload.size() > kExecParamsSize));
        if (exec) check_params_and_text(exec->params, exec->cmdline, payload);
        break;
    }
    case MSG_SERVICE_CONNECT: {
        auto connect = decode_service_connect(payload);
        require(connect.has_value() == (payload.size() > kExecParamsSize));
        if (!connect) break;
        check_params_and_text(connect->params, connect->ident, payload);
        if (auto fd = parse_socket_ident(connect->ident)) {
            require(*fd >= 0);
            require(get_fixed_string(make_socket_ident(*fd)) == connect->ident);
        }
        break;
    }
    case MSG_SERVICE_REFUSED: {
        auto refused = decode_service_refused(payload);
        require(refused.has_value() == (payload.size() == kIdentSize));
        if (refused) require(inside(*refused, payload) && refused->size() < kIdentSize + 1);
        break;
    }
    default:
        break; // the agent exits on any other type
    }
}

void control_stream(std::span<const std::byte> bytes) {
    size_t off = 0;
    for (;;) {
        auto view = next_frame(bytes.subspan(off), kMaxFramePayload);
        if (view.status != FrameStatus::Ready) break;
        control_message(*view.header, view.untrusted_payload);
        off += view.size;
    }
}

void local_trigger(std::span<const std::byte> bytes, int fd) {
    std::vector<std::byte> request(bytes.begin(), bytes.end());
    auto view = next_frame(std::span<std::byte>(request), kTrigger4FixedSize + kMaxServiceNameLen);
    if (!view.header || !is_local_trigger_header(*view.header)) return;
    require(view.status != FrameStatus::TooLong);
    if (view.status != FrameStatus::Ready) return;
    auto before = decode_trigger(view.header->type, view.untrusted_payload);
    std::vector<std::byte> original(view.untrusted_payload.begin(), view.untrusted_payload.end());
    require(set_trigger_ident(view.header->type, view.untrusted_payload, make_socket_ident(fd)));
    // Only the ident changed.
    auto layout = *trigger_layout(view.header->type);
    for (size_t i = 0; i < original.size(); ++i)
        if (i < layout.ident.offset || i >= layout.ident.end())
            require(original[i] == view.untrusted_payload[i]);
    // The daemon accepts it exactly when it would have accepted it with a
    // valid ident, and sees our ident in it.
    require(check_agent_header(*view.header, kProtocolVersion) == std::nullopt);
    auto after = decode_trigger(view.header->type, view.untrusted_payload);
    require(ident_text(after.ident) == "SOCKET" + std::to_string(fd));
    if (before.valid) {
        require(after.valid && after.valid->service == before.valid->service &&
                after.valid->target == before.valid->target &&
                after.valid->requested_source == before.valid->requested_source);
    }
    if (after.valid) require(is_valid_ident(after.valid->ident));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    auto bytes = fuzz::as_span(data + 1, size - 1);
    if (data[0] & 1)
        local_trigger(bytes, data[0] >> 1);
    else
        control_stream(bytes);
    return 0;
}
