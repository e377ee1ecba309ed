// Accumulates bytes from a non-blocking stream and cuts them into qrexec
// frames (header + payload). The header is shown to a checker as soon as its
// 8 bytes are in, so a hostile length is rejected before any body is awaited.
#pragma once

#include "protocol/messages.h"

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

namespace qrexec::daemon {

struct Frame {
    protocol::Header header;
    std::vector<std::byte> payload;
};

class FrameBuffer {
  public:
    enum class Status { NeedMore, Ready, Rejected };
    // Returns false to reject the header (the stream is then unusable).
    using HeaderCheck = std::function<bool(protocol::Header)>;

    void append(std::span<const std::byte> data);
    // Extracts the next complete frame into `out` if there is one.
    Status next(Frame& out, const HeaderCheck& check);
    size_t buffered() const { return data_.size() - start_; }
    void clear();

  private:
    std::vector<std::byte> data_;
    size_t start_ = 0;
    bool header_checked_ = false;
};

} // namespace qrexec::daemon
