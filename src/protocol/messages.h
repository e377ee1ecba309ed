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

uint32_t load_u32(std::span<const std::byte> bytes, size_t offset);
void store_u32(std::span<std::byte> bytes, size_t offset, uint32_t value);

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

// Encodes the payload of TRIGGER_SERVICE / 3 / 4 (type taken from the request).
std::vector<std::byte> encode_trigger(const TriggerRequest& request);

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

} // namespace qrexec::protocol
