#include "daemon/frame_buffer.h"

#include "protocol/frame.h"

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
    auto untrusted = std::span<const std::byte>(data_).subspan(start_);
    auto frame = protocol::next_frame(untrusted, protocol::kMaxFramePayload);
    if (!frame.header) return Status::NeedMore;
    if (!header_checked_) {
        // The endpoint's rule first, then the ceiling every endpoint shares.
        if (!check(*frame.header) || frame.status == protocol::FrameStatus::TooLong)
            return Status::Rejected;
        header_checked_ = true;
    }
    if (frame.status != protocol::FrameStatus::Ready) return Status::NeedMore;
    out.header = *frame.header;
    out.payload.assign(frame.untrusted_payload.begin(), frame.untrusted_payload.end());
    start_ += frame.size;
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
