#include "protocol/wire_reader.h"

#include <cstring>

namespace qrexec::protocol {

std::string_view read_error_text(ReadError error) {
    switch (error) {
    case ReadError::None:
        return "no error";
    case ReadError::Truncated:
        return "message truncated";
    case ReadError::TooLong:
        return "length over its bound";
    case ReadError::EmbeddedNul:
        return "NUL inside text";
    case ReadError::MissingNul:
        return "text not NUL-terminated at its end";
    case ReadError::TrailingBytes:
        return "unexpected bytes after the message";
    }
    return "unknown read error";
}

std::optional<std::span<const std::byte>> WireReader::bytes(size_t n) {
    if (!ok()) return std::nullopt;
    if (n > data_.size() - pos_) return fail<std::span<const std::byte>>(ReadError::Truncated);
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
}

std::optional<uint32_t> WireReader::u32() {
    auto raw = bytes(sizeof(uint32_t));
    if (!raw) return std::nullopt;
    uint32_t value = 0;
    std::memcpy(&value, raw->data(), sizeof value);
    return value;
}

std::optional<int32_t> WireReader::i32() {
    auto value = u32();
    if (!value) return std::nullopt;
    return static_cast<int32_t>(*value);
}

std::optional<std::string_view> WireReader::fixed_text(size_t field_size) {
    auto field = bytes(field_size);
    if (!field) return std::nullopt;
    if (field->empty()) return std::string_view{};
    std::string_view text(reinterpret_cast<const char*>(field->data()), field->size() - 1);
    return text.substr(0, text.find('\0'));
}

std::optional<std::string_view> WireReader::rest_as_nul_terminated(size_t max_len) {
    if (!ok()) return std::nullopt;
    size_t left = data_.size() - pos_;
    if (left == 0) return fail<std::string_view>(ReadError::MissingNul);
    if (left - 1 > max_len) return fail<std::string_view>(ReadError::TooLong);
    auto area = data_.subspan(pos_);
    if (area.back() != std::byte{0}) return fail<std::string_view>(ReadError::MissingNul);
    std::string_view text(reinterpret_cast<const char*>(area.data()), area.size() - 1);
    if (text.find('\0') != std::string_view::npos)
        return fail<std::string_view>(ReadError::EmbeddedNul);
    pos_ = data_.size();
    return text;
}

std::span<const std::byte> WireReader::rest() {
    if (!ok()) return {};
    auto out = data_.subspan(pos_);
    pos_ = data_.size();
    return out;
}

bool WireReader::expect_end() {
    if (!ok()) return false;
    if (pos_ != data_.size()) {
        fail<int>(ReadError::TrailingBytes);
        return false;
    }
    return true;
}

std::optional<uint32_t> load_u32(std::span<const std::byte> bytes, size_t offset) {
    if (offset > bytes.size()) return std::nullopt;
    return WireReader(bytes.subspan(offset)).u32();
}

} // namespace qrexec::protocol
