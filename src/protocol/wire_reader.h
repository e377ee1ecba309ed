// Bounds-checked reading of untrusted wire bytes, in the spirit of OpenSSH's
// sshbuf_get_*: every read either yields a value or records why it could not
// (past the end, a length over its bound, a NUL where none may be), and every
// later read then fails too, so a chain of reads needs one check at its end.
// Nothing here can read outside the span it was given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace qrexec::protocol {

enum class ReadError {
    None,
    Truncated,     // fewer bytes left than the read needs
    TooLong,       // a length over the bound the caller gave
    EmbeddedNul,   // a NUL inside text that must not hold one
    MissingNul,    // text that must end with a NUL does not
    TrailingBytes, // bytes left where the message must end
};

std::string_view read_error_text(ReadError error);

class WireReader {
  public:
    explicit WireReader(std::span<const std::byte> untrusted_bytes) : data_(untrusted_bytes) {}

    bool ok() const { return error_ == ReadError::None; }
    ReadError error() const { return error_; }
    size_t remaining() const { return ok() ? data_.size() - pos_ : 0; }

    // Host-endian (= little-endian, see messages.h) 32-bit integers.
    std::optional<uint32_t> u32();
    std::optional<int32_t> i32();
    // Exactly n bytes.
    std::optional<std::span<const std::byte>> bytes(size_t n);
    // A fixed-size text field: the text before its first NUL, the last byte
    // counting as NUL whatever it holds (C's strncpy + forced terminator).
    std::optional<std::string_view> fixed_text(size_t field_size);
    // Everything left, which must be text of at most max_len bytes followed by
    // exactly one NUL as the very last byte.
    std::optional<std::string_view> rest_as_nul_terminated(size_t max_len);
    // Everything left, unchecked (an opaque body).
    std::span<const std::byte> rest();
    // Fails with TrailingBytes if anything is left.
    bool expect_end();

  private:
    template <typename T> std::optional<T> fail(ReadError error) {
        if (ok()) error_ = error;
        return std::nullopt;
    }

    std::span<const std::byte> data_;
    size_t pos_ = 0;
    ReadError error_ = ReadError::None;
};

// Reads a u32 at `offset` of `bytes`; nullopt when it does not fit.
std::optional<uint32_t> load_u32(std::span<const std::byte> bytes, size_t offset);

} // namespace qrexec::protocol
