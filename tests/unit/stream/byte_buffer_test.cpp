#include "stream/byte_buffer.h"

#include <gtest/gtest.h>

#include <array>

using qrexec::stream::ByteBuffer;

namespace {
std::array<std::byte, 3> bytes(char a, char b, char c) {
    return {std::byte(a), std::byte(b), std::byte(c)};
}
} // namespace

TEST(ByteBuffer, AppendGrowsAndKeepsEarlierBytes) {
    ByteBuffer buf(4);
    buf.append(bytes('a', 'b', 'c'));
    buf.append(bytes('d', 'e', 'f')); // beyond the first capacity
    ASSERT_EQ(buf.size(), 6u);
    EXPECT_GE(buf.capacity(), 6u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), buf.size()), "abcdef");
}

TEST(ByteBuffer, ResizeForOverwriteKeepsThePrefixAndClearKeepsStorage) {
    ByteBuffer buf;
    buf.append(bytes('x', 'y', 'z'));
    const std::byte* before = buf.data();
    buf.resize_for_overwrite(2);
    EXPECT_EQ(buf.size(), 2u);
    EXPECT_EQ(buf.data(), before);
    buf.resize_for_overwrite(1000);
    EXPECT_EQ(buf.size(), 1000u);
    EXPECT_EQ(buf.data()[0], std::byte('x'));
    EXPECT_EQ(buf.data()[1], std::byte('y'));
    const std::byte* grown = buf.data();
    buf.clear();
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(buf.capacity(), 1000u);
    buf.append(bytes('1', '2', '3'));
    EXPECT_EQ(buf.data(), grown); // reused, not reallocated
    EXPECT_EQ(buf.span().size(), 3u);
}
