#include "protocol/frame.h"

#include <gtest/gtest.h>

#include <vector>

using namespace qrexec::protocol;

namespace {
std::vector<std::byte> frame_bytes(uint32_t type, size_t payload_len) {
    std::vector<std::byte> payload(payload_len, std::byte{'x'});
    return encode_frame(type, payload);
}
} // namespace

TEST(NextFrame, NeedsAWholeHeaderFirst) {
    auto bytes = frame_bytes(MSG_DATA_STDOUT, 3);
    for (size_t n = 0; n < kHeaderSize; ++n) {
        auto view = next_frame(std::span<const std::byte>(bytes).first(n), 100);
        EXPECT_EQ(view.status, FrameStatus::NeedHeader) << n;
        EXPECT_FALSE(view.header);
    }
}

TEST(NextFrame, ShowsTheHeaderWhileThePayloadIsIncomplete) {
    auto bytes = frame_bytes(MSG_DATA_STDOUT, 3);
    auto view = next_frame(std::span<const std::byte>(bytes).first(kHeaderSize + 2), 100);
    EXPECT_EQ(view.status, FrameStatus::NeedPayload);
    ASSERT_TRUE(view.header);
    EXPECT_EQ(view.header->len, 3u);
    EXPECT_TRUE(view.untrusted_payload.empty());
}

TEST(NextFrame, CutsExactlyOneFrameOffTheFront) {
    auto bytes = frame_bytes(MSG_DATA_STDOUT, 3);
    auto second = frame_bytes(MSG_DATA_STDERR, 0);
    bytes.insert(bytes.end(), second.begin(), second.end());
    auto view = next_frame(std::span<const std::byte>(bytes), 100);
    ASSERT_EQ(view.status, FrameStatus::Ready);
    EXPECT_EQ(view.header->type, MSG_DATA_STDOUT);
    EXPECT_EQ(view.size, kHeaderSize + 3);
    EXPECT_EQ(view.untrusted_payload.size(), 3u);
    EXPECT_EQ(view.untrusted_payload.data(), bytes.data() + kHeaderSize);
    auto next = next_frame(std::span<const std::byte>(bytes).subspan(view.size), 100);
    ASSERT_EQ(next.status, FrameStatus::Ready);
    EXPECT_EQ(next.header->type, MSG_DATA_STDERR);
    EXPECT_EQ(next.size, kHeaderSize);
}

TEST(NextFrame, RejectsALengthOverTheBoundBeforeItsPayloadArrives) {
    auto bytes = frame_bytes(MSG_DATA_STDOUT, 101);
    auto view = next_frame(std::span<const std::byte>(bytes).first(kHeaderSize), 100);
    EXPECT_EQ(view.status, FrameStatus::TooLong);
    EXPECT_EQ(view.header->len, 101u);
    auto header = encode_header({MSG_DATA_STDOUT, 0xffffffff});
    EXPECT_EQ(next_frame(std::span<const std::byte>(header), SIZE_MAX - 1).status,
              FrameStatus::NeedPayload);
    EXPECT_EQ(next_frame(std::span<const std::byte>(header), 100).status, FrameStatus::TooLong);
}

TEST(NextFrame, MutableViewPointsIntoTheBuffer) {
    auto bytes = frame_bytes(MSG_DATA_STDOUT, 2);
    auto view = next_frame(std::span<std::byte>(bytes), 100);
    ASSERT_EQ(view.status, FrameStatus::Ready);
    view.untrusted_payload[0] = std::byte{'y'};
    EXPECT_EQ(bytes[kHeaderSize], std::byte{'y'});
}

TEST(Hello, UsesTheLowerVersionAndEnforcesTheMinimum) {
    auto payload = encode_hello(3);
    auto ok = check_hello({MSG_HELLO, 4}, payload, kVchanHello);
    EXPECT_EQ(ok.version, 3u);
    EXPECT_EQ(ok.peer_version, 3u);

    auto newer = encode_hello(99);
    EXPECT_EQ(check_hello({MSG_HELLO, 4}, newer, kVchanHello).version, kProtocolVersion);
    EXPECT_EQ(check_hello({MSG_HELLO, 4}, newer, kLocalSocketHello).version, 3u);

    auto old = encode_hello(1);
    auto refused = check_hello({MSG_HELLO, 4}, old, kVchanHello);
    EXPECT_FALSE(refused.version);
    EXPECT_EQ(refused.peer_version, 1u);
    EXPECT_NE(refused.error.find("incompatible"), std::string::npos);

    auto two = encode_hello(2);
    EXPECT_EQ(check_hello({MSG_HELLO, 4}, two, kVchanHello).version, 2u);
    EXPECT_FALSE(check_hello({MSG_HELLO, 4}, two, kLocalSocketHello).version);
}

TEST(Hello, RejectsAnythingButAFourByteHello) {
    auto payload = encode_hello(4);
    EXPECT_FALSE(is_hello_header({MSG_HELLO, 5}));
    EXPECT_FALSE(is_hello_header({MSG_DATA_STDIN, 4}));
    EXPECT_TRUE(is_hello_header({MSG_HELLO, 4}));
    auto wrong_type = check_hello({MSG_DATA_STDIN, 4}, payload, kVchanHello);
    EXPECT_FALSE(wrong_type.version);
    EXPECT_NE(wrong_type.error.find("0x190"), std::string::npos);
    std::vector<std::byte> five(5);
    EXPECT_FALSE(check_hello({MSG_HELLO, 5}, five, kVchanHello).version);
    // A header that promises 4 bytes with a payload that is not 4 bytes.
    EXPECT_FALSE(check_hello({MSG_HELLO, 4}, std::span(payload).first(3), kVchanHello).version);
}
