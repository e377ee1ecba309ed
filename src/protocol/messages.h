// Pure encode/decode of every qrexec wire message (PROTOCOL.md §2-§4).
// Integers are host-endian on the wire; every supported platform is
// little-endian, and we assume so (static_assert below).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

static_assert(std::endian::native == std::endian::little,
              "qrexec wire integers are host-endian; only little-endian hosts are supported");

namespace qrexec::protocol {

enum MsgType : uint32_t {
    MSG_DATA_STDIN = 0x190,
    MSG_DATA_STDOUT = 0x191,
    MSG_DATA_STDERR = 0x192,
    MSG_DATA_EXIT_CODE = 0x193,
    MSG_EXEC_CMDLINE = 0x200,
    MSG_JUST_EXEC = 0x201,
    MSG_SERVICE_CONNECT = 0x202,
    MSG_SERVICE_REFUSED = 0x203,
    MSG_TRIGGER_SERVICE = 0x210,
    MSG_CONNECTION_TERMINATED = 0x211,
    MSG_TRIGGER_SERVICE3 = 0x212,
    MSG_TRIGGER_SERVICE4 = 0x213,
    MSG_HELLO = 0x300,
};

inline constexpr uint32_t kProtocolVersion = 4;
inline constexpr uint32_t kClientProtocolVersion = 3;
inline constexpr uint32_t kMinProtocolVersion = 2;
inline constexpr size_t kMaxDataChunkV2 = 4096;
inline constexpr size_t kMaxDataChunkV3 = 65536;
inline constexpr size_t kMaxServiceNameLen = 65000;
inline constexpr size_t kMaxQrexecCmdLen = 65535;
inline constexpr uint32_t kVchanBasePort = 512;
inline constexpr uint32_t kFirstDataPort = 513;
inline constexpr uint32_t kDataPortCount = 256;
inline constexpr size_t kHeaderSize = 8;
inline constexpr size_t kExecParamsSize = 8;
inline constexpr size_t kIdentSize = 32;
inline constexpr size_t kTrigger2Size = 128;
inline constexpr size_t kTrigger3FixedSize = 96;
inline constexpr size_t kTrigger4FixedSize = 160;
inline constexpr size_t kDomainFieldSize = 64;

inline constexpr int kExitProblem = 125;
inline constexpr int kExitRefused = 126;
inline constexpr int kExitNotFound = 127;

std::string_view msg_type_name(uint32_t type);

inline size_t max_chunk_for_version(uint32_t version) {
    return version >= 3 ? kMaxDataChunkV3 : kMaxDataChunkV2;
}

struct Header {
    uint32_t type = 0;
    uint32_t len = 0;
};

using HeaderBytes = std::array<std::byte, kHeaderSize>;

HeaderBytes encode_header(Header header);
Header decode_header(std::span<const std::byte, kHeaderSize> bytes);

// A whole frame: header followed by payload.
std::vector<std::byte> encode_frame(uint32_t type, std::span<const std::byte> payload);

std::span<const std::byte> as_bytes(std::string_view text);
std::string_view as_text(std::span<const std::byte> bytes);

struct ExecParams {
    uint32_t connect_domain = 0;
    uint32_t connect_port = 0;
};

std::vector<std::byte> encode_hello(uint32_t version);
// Payload of HELLO must be exactly 4 bytes.
std::optional<uint32_t> decode_hello(std::span<const std::byte> payload);

std::vector<std::byte> encode_exec_params(ExecParams params, std::span<const std::byte> body = {});
// Needs at least 8 bytes; the body (cmdline / ident) is everything after them.
std::optional<ExecParams> decode_exec_params(std::span<const std::byte> payload);

// A fixed-size NUL-terminated field: copies at most size-1 bytes and zero-fills.
void put_fixed_string(std::span<std::byte> field, std::string_view text);
// Text up to the first NUL (or the whole field if there is none).
std::string_view get_fixed_string(std::span<const std::byte> field);

using Ident = std::array<std::byte, kIdentSize>;
Ident make_ident(std::string_view text);

struct TriggerRequest {
    uint32_t type = MSG_TRIGGER_SERVICE4;
    std::string source_domain; // v4 only; empty = none
    std::string target_domain;
    Ident ident{};
    std::string service_name; // "svc+arg"
};

// Where each field of a TRIGGER_SERVICE / 3 / 4 payload lies: the one table
// used by encode_trigger, decode_trigger and the agent's ident patch.
struct WireField {
    size_t offset = 0;
    size_t size = 0;
    constexpr size_t end() const { return offset + size; }
};
struct TriggerLayout {
    size_t fixed_size = 0;           // v3/v4: the service name follows
    std::optional<WireField> source; // v4 only
    WireField target;
    WireField ident;
    std::optional<WireField> fixed_service; // v2 only (v3/v4: variable, NUL-terminated)
};
constexpr std::optional<TriggerLayout> trigger_layout(uint32_t type) {
    switch (type) {
    case MSG_TRIGGER_SERVICE:
        return TriggerLayout{
            kTrigger2Size, std::nullopt, {64, 32}, {96, kIdentSize}, WireField{0, 64}};
    case MSG_TRIGGER_SERVICE3:
        return TriggerLayout{
            kTrigger3FixedSize, std::nullopt, {0, 64}, {64, kIdentSize}, std::nullopt};
    case MSG_TRIGGER_SERVICE4:
        return TriggerLayout{
            kTrigger4FixedSize, WireField{0, 64}, {64, 64}, {128, kIdentSize}, std::nullopt};
    default:
        return std::nullopt;
    }
}
static_assert(trigger_layout(MSG_TRIGGER_SERVICE)->ident.end() == kTrigger2Size);
static_assert(trigger_layout(MSG_TRIGGER_SERVICE3)->ident.end() == kTrigger3FixedSize);
static_assert(trigger_layout(MSG_TRIGGER_SERVICE4)->ident.end() == kTrigger4FixedSize);

// Encodes the payload of TRIGGER_SERVICE / 3 / 4 (type taken from the request;
// anything else is encoded as TRIGGER_SERVICE4).
std::vector<std::byte> encode_trigger(const TriggerRequest& request);
// Overwrites the ident of a trigger payload in place (the agent marks each
// qrexec-client-vm request with its own handle). False if the payload is too
// short for its type or the type is not a trigger.
bool set_trigger_ident(uint32_t type, std::span<std::byte> payload, const Ident& ident);

// Exit-code payload: 4-byte little-endian int.
std::array<std::byte, 4> encode_exit_code(int32_t code);
// len < 4 -> 255, extra bytes ignored (PROTOCOL.md §5.4).
int32_t decode_exit_code(std::span<const std::byte> payload);

// Fork-server request (AGENT.md §8): 16-byte header + cmdline incl NUL.
struct ForkServerRequest {
    int32_t type = MSG_EXEC_CMDLINE;
    int32_t connect_domain = 0;
    int32_t connect_port = 0;
    std::string cmdline; // without NUL
};
inline constexpr size_t kForkServerHeaderSize = 16;
std::vector<std::byte> encode_fork_server_request(const ForkServerRequest& request);
// The 16-byte header of a fork-server request; `cmdline` is left empty and the
// announced length (NUL included) is returned beside it.
struct ForkServerHeader {
    int32_t type = 0;
    int32_t connect_domain = 0;
    int32_t connect_port = 0;
    uint32_t cmdline_len = 0;
};
ForkServerHeader decode_fork_server_header(std::span<const std::byte, kForkServerHeaderSize> bytes);

} // namespace qrexec::protocol
