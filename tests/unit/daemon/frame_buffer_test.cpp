#include "daemon/frame_buffer.h"

#include <gtest/gtest.h>

using namespace qrexec::daemon;
using namespace qrexec::protocol;

namespace {
std::vector<std::byte> msg(uint32_t type, std::string_view payload) {
    return encode_frame(type, as_bytes(payload));
}
const FrameBuffer::HeaderCheck kAny = [](Header) { return true; };
} // namespace

TEST(FrameBuffer, SeveralFramesInOneChunk) {
    FrameBuffer buf;
    auto a = msg(1, "abc");
    auto b = msg(2, "");
    auto c = msg(3, "xy");
    std::vector<std::byte> all;
    for (auto* m : {&a, &b, &c})
        all.insert(all.end(), m->begin(), m->end());
    buf.append(all);
    Frame f;
    ASSERT_EQ(buf.next(f, kAny), FrameBuffer::Status::Ready);
    EXPECT_EQ(f.header.type, 1u);
    EXPECT_EQ(as_text(f.payload), "abc");
    ASSERT_EQ(buf.next(f, kAny), FrameBuffer::Status::Ready);
    EXPECT_EQ(f.header.type, 2u);
    EXPECT_TRUE(f.payload.empty());
    ASSERT_EQ(buf.next(f, kAny), FrameBuffer::Status::Ready);
    EXPECT_EQ(as_text(f.payload), "xy");
    EXPECT_EQ(buf.next(f, kAny), FrameBuffer::Status::NeedMore);
    EXPECT_EQ(buf.buffered(), 0u);
}

TEST(FrameBuffer, ByteByByte) {
    FrameBuffer buf;
    auto m = msg(7, "hello");
    Frame f;
    for (size_t i = 0; i + 1 < m.size(); ++i) {
        buf.append(std::span<const std::byte>(&m[i], 1));
        EXPECT_EQ(buf.next(f, kAny), FrameBuffer::Status::NeedMore);
    }
    buf.append(std::span<const std::byte>(&m.back(), 1));
    ASSERT_EQ(buf.next(f, kAny), FrameBuffer::Status::Ready);
    EXPECT_EQ(as_text(f.payload), "hello");
}

TEST(FrameBuffer, HeaderRejectedBeforeBody) {
    FrameBuffer buf;
    auto header = encode_header({5, 0xFFFFFFFF});
    buf.append(header);
    Frame f;
    int checks = 0;
    auto check = [&](Header h) {
        ++checks;
        return h.len < 100;
    };
    EXPECT_EQ(buf.next(f, check), FrameBuffer::Status::Rejected);
    EXPECT_EQ(checks, 1);
}

TEST(FrameBuffer, HeaderCheckedOncePerFrame) {
    FrameBuffer buf;
    auto m = msg(1, "abcdef");
    buf.append(std::span<const std::byte>(m.data(), 10));
    int checks = 0;
    auto check = [&](Header) {
        ++checks;
        return true;
    };
    Frame f;
    EXPECT_EQ(buf.next(f, check), FrameBuffer::Status::NeedMore);
    buf.append(std::span<const std::byte>(m.data() + 10, m.size() - 10));
    EXPECT_EQ(buf.next(f, check), FrameBuffer::Status::Ready);
    EXPECT_EQ(checks, 1);
}
