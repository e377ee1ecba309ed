#include "protocol/messages.h"

#include <gtest/gtest.h>

using namespace qrexec::protocol;

TEST(Messages, HeaderRoundTrip) {
    auto bytes = encode_header({MSG_DATA_STDOUT, 1234});
    auto header = decode_header(bytes);
    EXPECT_EQ(header.type, MSG_DATA_STDOUT);
    EXPECT_EQ(header.len, 1234u);
    EXPECT_EQ(static_cast<uint8_t>(bytes[0]), 0x91);
    EXPECT_EQ(static_cast<uint8_t>(bytes[1]), 0x01);
}

TEST(Messages, HelloNeedsExactlyFourBytes) {
    EXPECT_EQ(decode_hello(encode_hello(4)), 4u);
    std::vector<std::byte> five(5);
    EXPECT_FALSE(decode_hello(five).has_value());
}

TEST(Messages, ExitCodeShortPayloadIs255) {
    std::vector<std::byte> two(2);
    EXPECT_EQ(decode_exit_code(two), 255);
    EXPECT_EQ(decode_exit_code(encode_exit_code(-1)), -1);
    EXPECT_EQ(decode_exit_code(encode_exit_code(42)), 42);
}

TEST(Messages, Trigger4Layout) {
    TriggerRequest request;
    request.source_domain = "src";
    request.target_domain = "vault";
    request.ident = make_ident("SOCKET");
    request.service_name = "qubes.Foo+bar";
    auto payload = encode_trigger(request);
    ASSERT_EQ(payload.size(), kTrigger4FixedSize + request.service_name.size() + 1);
    EXPECT_EQ(get_fixed_string(std::span(payload).subspan(0, 64)), "src");
    EXPECT_EQ(get_fixed_string(std::span(payload).subspan(64, 64)), "vault");
    EXPECT_EQ(get_fixed_string(std::span(payload).subspan(128, 32)), "SOCKET");
    EXPECT_EQ(as_text(std::span(payload).subspan(160)), std::string_view("qubes.Foo+bar\0", 14));
}

TEST(Messages, FixedStringTruncatesAndTerminates) {
    std::array<std::byte, 4> field{};
    put_fixed_string(field, "abcdef");
    EXPECT_EQ(get_fixed_string(field), "abc");
    EXPECT_EQ(field[3], std::byte{0});
}
