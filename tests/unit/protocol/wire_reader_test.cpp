#include "protocol/messages.h"
#include "protocol/wire_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace qrexec::protocol;

namespace {
std::vector<std::byte> bytes_of(std::string_view text) {
    auto span = as_bytes(text);
    return {span.begin(), span.end()};
}
} // namespace

TEST(WireReader, ReadsIntegersInOrderAndStopsAtTheEnd) {
    auto data = bytes_of(std::string("\x01\x00\x00\x00\xff\xff\xff\xff\x07", 9));
    WireReader reader(data);
    EXPECT_EQ(reader.u32(), 1u);
    EXPECT_EQ(reader.i32(), -1);
    EXPECT_EQ(reader.remaining(), 1u);
    EXPECT_FALSE(reader.u32().has_value());
    EXPECT_EQ(reader.error(), ReadError::Truncated);
}

TEST(WireReader, AnErrorIsStickySoLaterReadsFailToo) {
    auto data = bytes_of("abc");
    WireReader reader(data);
    EXPECT_FALSE(reader.bytes(4));
    EXPECT_FALSE(reader.bytes(1)); // would fit, but the reader already failed
    EXPECT_EQ(reader.remaining(), 0u);
    EXPECT_TRUE(reader.rest().empty());
    EXPECT_FALSE(reader.expect_end());
    EXPECT_EQ(reader.error(), ReadError::Truncated);
}

TEST(WireReader, HugeLengthsDoNotWrapAround) {
    auto data = bytes_of("abcdef");
    WireReader reader(data);
    ASSERT_TRUE(reader.bytes(2));
    EXPECT_FALSE(reader.bytes(SIZE_MAX));
    EXPECT_EQ(reader.error(), ReadError::Truncated);
    EXPECT_FALSE(load_u32(data, SIZE_MAX).has_value());
    EXPECT_FALSE(load_u32(data, 3).has_value());
    EXPECT_TRUE(load_u32(data, 2).has_value());
}

TEST(WireReader, FixedTextTreatsTheLastByteAsNul) {
    auto data = bytes_of(std::string("abcdef\0x", 8));
    WireReader reader(data);
    EXPECT_EQ(reader.fixed_text(4), "abc"); // 'd' counts as the terminator
    EXPECT_EQ(reader.fixed_text(4), "ef");  // stops at the first NUL
    EXPECT_TRUE(reader.expect_end());
}

TEST(WireReader, NulTerminatedRestRules) {
    {
        auto data = bytes_of(std::string("svc+arg\0", 8));
        WireReader reader(data);
        EXPECT_EQ(reader.rest_as_nul_terminated(7), "svc+arg");
        EXPECT_TRUE(reader.expect_end());
    }
    {
        auto data = bytes_of(std::string("svc+arg\0", 8));
        WireReader reader(data);
        EXPECT_FALSE(reader.rest_as_nul_terminated(6));
        EXPECT_EQ(reader.error(), ReadError::TooLong);
    }
    {
        auto data = bytes_of(std::string("sv\0c\0", 5));
        WireReader reader(data);
        EXPECT_FALSE(reader.rest_as_nul_terminated(100));
        EXPECT_EQ(reader.error(), ReadError::EmbeddedNul);
    }
    {
        auto data = bytes_of("svc");
        WireReader reader(data);
        EXPECT_FALSE(reader.rest_as_nul_terminated(100));
        EXPECT_EQ(reader.error(), ReadError::MissingNul);
    }
    {
        WireReader reader({});
        EXPECT_FALSE(reader.rest_as_nul_terminated(100));
        EXPECT_EQ(reader.error(), ReadError::MissingNul);
    }
}

TEST(WireReader, ExpectEndReportsTrailingBytes) {
    auto data = bytes_of("abcde");
    WireReader reader(data);
    ASSERT_TRUE(reader.u32());
    EXPECT_FALSE(reader.expect_end());
    EXPECT_EQ(reader.error(), ReadError::TrailingBytes);
    EXPECT_NE(read_error_text(reader.error()), read_error_text(ReadError::None));
}
