#include "protocol/frame.h"

#include "protocol/wire_reader.h"

#include <algorithm>
#include <cstdio>

namespace qrexec::protocol {
namespace {

template <typename Byte>
BasicFrameView<Byte> next_frame_in(std::span<Byte> untrusted_bytes, size_t max_payload) {
    BasicFrameView<Byte> view;
    WireReader reader(untrusted_bytes);
    auto type = reader.u32();
    auto len = reader.u32();
    if (!type || !len) return view;
    view.header = Header{*type, *len};
    if (*len > max_payload) {
        view.status = FrameStatus::TooLong;
        return view;
    }
    if (reader.remaining() < *len) {
        view.status = FrameStatus::NeedPayload;
        return view;
    }
    view.status = FrameStatus::Ready;
    view.untrusted_payload = untrusted_bytes.subspan(kHeaderSize, *len);
    view.size = kHeaderSize + *len;
    return view;
}

} // namespace

FrameView next_frame(std::span<const std::byte> untrusted_bytes, size_t max_payload) {
    return next_frame_in(untrusted_bytes, max_payload);
}

MutableFrameView next_frame(std::span<std::byte> untrusted_bytes, size_t max_payload) {
    return next_frame_in(untrusted_bytes, max_payload);
}

bool is_hello_header(Header header) {
    return header.type == MSG_HELLO && header.len == 4;
}

HelloOutcome check_hello(Header header, std::span<const std::byte> untrusted_payload,
                         HelloRule rule) {
    HelloOutcome outcome;
    if (!is_hello_header(header) || untrusted_payload.size() != header.len) {
        char text[64];
        std::snprintf(text, sizeof text, "invalid HELLO (type 0x%x, len %u)", header.type,
                      header.len);
        outcome.error = text;
        return outcome;
    }
    WireReader reader(untrusted_payload);
    auto peer = reader.u32();
    if (!peer || !reader.expect_end()) {
        outcome.error =
            std::string("invalid HELLO: ") + std::string(read_error_text(reader.error()));
        return outcome;
    }
    outcome.peer_version = *peer;
    uint32_t used = std::min(*peer, rule.ours);
    if (used < rule.minimum) {
        outcome.error = "incompatible protocol version (remote " + std::to_string(*peer) +
                        ", local " + std::to_string(rule.ours) + ")";
        return outcome;
    }
    outcome.version = used;
    return outcome;
}

} // namespace qrexec::protocol
