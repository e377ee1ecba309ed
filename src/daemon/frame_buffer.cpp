#include "daemon/frame_buffer.h"

namespace qrexec::daemon {

void FrameBuffer::append(std::span<const std::byte> data) {
    // Compact lazily so a long run of small frames does not grow the vector.
    if (start_ > 0 && start_ >= data_.size() / 2) {
        data_.erase(data_.begin(), data_.begin() + static_cast<ptrdiff_t>(start_));
        start_ = 0;
    }
    data_.insert(data_.end(), data.begin(), data.end());
}

FrameBuffer::Status FrameBuffer::next(Frame& out, const HeaderCheck& check) {
    if (buffered() < protocol::kHeaderSize) return Status::NeedMore;
    auto header = protocol::decode_header(std::span<const std::byte, protocol::kHeaderSize>(
        data_.data() + start_, protocol::kHeaderSize));
    if (!header_checked_) {
        if (!check(header)) return Status::Rejected;
        header_checked_ = true;
    }
    if (buffered() - protocol::kHeaderSize < header.len) return Status::NeedMore;
    auto body = data_.begin() + static_cast<ptrdiff_t>(start_ + protocol::kHeaderSize);
    out.header = header;
    out.payload.assign(body, body + header.len);
    start_ += protocol::kHeaderSize + header.len;
    header_checked_ = false;
    if (start_ == data_.size()) clear();
    return Status::Ready;
}

void FrameBuffer::clear() {
    data_.clear();
    start_ = 0;
    header_checked_ = false;
}

} // namespace qrexec::daemon
