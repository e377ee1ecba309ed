// The one frame assembler (header + payload, bounded) and the one HELLO
// exchange check, used by every endpoint that reads qrexec frames: the daemon
// (agent vchan, client socket, daemon calls), the agent (control vchan,
// qrexec-client-vm requests), the data-stream engine and qrexec-client.
#pragma once

#include "protocol/messages.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace qrexec::protocol {

enum class FrameStatus {
    NeedHeader,  // fewer than 8 bytes buffered
    NeedPayload, // header known (and within the bound), payload incomplete
    Ready,       // a whole frame is at the front of the buffer
    TooLong,     // header.len is over the caller's bound: the stream is unusable
};

// No endpoint accepts a frame payload larger than this (the largest legal one,
// a TRIGGER_SERVICE4, is 65160 bytes; dom0's control messages stay far below).
inline constexpr size_t kMaxFramePayload = size_t{1} << 20;

// A view of the frame at the front of a buffer. Views point into the buffer
// given to next_frame and die with it.
template <typename Byte> struct BasicFrameView {
    FrameStatus status = FrameStatus::NeedHeader;
    std::optional<Header> header;        // set once 8 bytes are in
    std::span<Byte> untrusted_payload{}; // set when Ready
    size_t size = 0;                     // bytes the frame occupies (when Ready)
};
using FrameView = BasicFrameView<const std::byte>;
using MutableFrameView = BasicFrameView<std::byte>;

// Looks at the front of `untrusted_bytes`: never reads past it, and never
// reports more than max_payload bytes of payload as awaited or ready.
FrameView next_frame(std::span<const std::byte> untrusted_bytes, size_t max_payload);
MutableFrameView next_frame(std::span<std::byte> untrusted_bytes, size_t max_payload);

// ---- HELLO (PROTOCOL.md §4) ----

struct HelloRule {
    uint32_t ours;    // the version we announce
    uint32_t minimum; // the lowest version we speak
};
// Agent <-> daemon control vchan and data vchans: v2..v4.
inline constexpr HelloRule kVchanHello{kProtocolVersion, kMinProtocolVersion};
// qrexec-client <-> qrexec-daemon socket: v3 both ways.
inline constexpr HelloRule kLocalSocketHello{kClientProtocolVersion, kClientProtocolVersion};

struct HelloOutcome {
    std::optional<uint32_t> version; // the version both sides use, when accepted
    uint32_t peer_version = 0;       // what the peer announced (0 if unreadable)
    std::string error;               // why it was refused, when !version
};

// Whether a header can start a HELLO (checked before its payload is awaited).
bool is_hello_header(Header header);
// Checks a whole HELLO frame: the header, its 4-byte payload and the version
// rule (the lower of both versions is used and must be at least rule.minimum).
HelloOutcome check_hello(Header header, std::span<const std::byte> untrusted_payload,
                         HelloRule rule);

} // namespace qrexec::protocol
