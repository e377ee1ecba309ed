#include "protocol/requests.h"

#include <gtest/gtest.h>

#include <string>

using namespace qrexec::protocol;

namespace {
std::vector<std::byte> exec_payload(std::string_view body) {
    return encode_exec_params({7, 514}, as_bytes(body));
}
} // namespace

TEST(ExecRequest, CommandEndsAtTheFirstNulAndTheLastByteIsForcedNul) {
    auto plain = exec_payload(std::string_view("user:cmd\0", 9));
    auto decoded = decode_exec_request(plain);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->params.connect_domain, 7u);
    EXPECT_EQ(decoded->params.connect_port, 514u);
    EXPECT_EQ(decoded->cmdline, "user:cmd");

    auto unterminated = exec_payload("user:cmdX");
    EXPECT_EQ(decode_exec_request(unterminated)->cmdline, "user:cmd");
    auto embedded = exec_payload(std::string_view("a\0b\0", 4));
    EXPECT_EQ(decode_exec_request(embedded)->cmdline, "a");
}

TEST(ExecRequest, NeedsAtLeastOneByteOfBody) {
    auto none = encode_exec_params({1, 2});
    EXPECT_FALSE(decode_exec_request(none));
    EXPECT_FALSE(decode_service_connect(none));
    EXPECT_FALSE(decode_exec_request(std::span(none).first(5)));
}

TEST(ServiceRefused, ExactlyAnIdent) {
    auto ident = make_ident("SOCKET12");
    EXPECT_EQ(decode_service_refused(ident), "SOCKET12");
    EXPECT_FALSE(decode_service_refused(std::span(ident).first(31)));
}

TEST(SocketIdent, RoundTripsAndAcceptsNothingElse) {
    for (int fd : {0, 3, 42, 999999999}) {
        auto ident = make_socket_ident(fd);
        EXPECT_EQ(parse_socket_ident(get_fixed_string(ident)), fd);
    }
    for (std::string_view bad :
         {"", "SOCKET", "SOCKET-1", "SOCKET01", "SOCKET1x", "socket1", "SOCKET1234567890"})
        EXPECT_FALSE(parse_socket_ident(bad)) << bad;
}

TEST(LocalTrigger, OnlyBoundedTrigger4) {
    EXPECT_TRUE(is_local_trigger_header({MSG_TRIGGER_SERVICE4, kTrigger4FixedSize + 1}));
    EXPECT_TRUE(
        is_local_trigger_header({MSG_TRIGGER_SERVICE4, kTrigger4FixedSize + kMaxServiceNameLen}));
    EXPECT_FALSE(is_local_trigger_header(
        {MSG_TRIGGER_SERVICE4, kTrigger4FixedSize + kMaxServiceNameLen + 1}));
    EXPECT_FALSE(is_local_trigger_header({MSG_TRIGGER_SERVICE4, kTrigger4FixedSize}));
    EXPECT_FALSE(is_local_trigger_header({MSG_TRIGGER_SERVICE3, 200}));
}

TEST(ClientCommand, NeedsParamsAndANulTerminatedBody) {
    auto payload = exec_payload(std::string_view("DEFAULT:cmd\0", 12));
    Header header{MSG_EXEC_CMDLINE, static_cast<uint32_t>(payload.size())};
    auto decoded = decode_client_command(header, payload);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->text, "DEFAULT:cmd");
    EXPECT_EQ(decoded->body.size(), 12u);
    EXPECT_EQ(decoded->params.connect_port, 514u);

    auto unterminated = exec_payload("cmd");
    EXPECT_FALSE(decode_client_command(
        {MSG_EXEC_CMDLINE, static_cast<uint32_t>(unterminated.size())}, unterminated));
    // Header and payload disagree.
    EXPECT_FALSE(decode_client_command({MSG_EXEC_CMDLINE, 100}, payload));
    // Types a client may not send.
    EXPECT_FALSE(decode_client_command({MSG_TRIGGER_SERVICE4, header.len}, payload));
    EXPECT_FALSE(is_client_command_header({MSG_JUST_EXEC, kExecParamsSize}));
    EXPECT_FALSE(is_client_command_header({MSG_JUST_EXEC, kMaxQrexecCmdLen + 1}));
    EXPECT_TRUE(is_client_command_header({MSG_SERVICE_CONNECT, kExecParamsSize + 1}));
}

TEST(ForkServerHeader, DecodesWhatIsEncoded) {
    ForkServerRequest request{MSG_JUST_EXEC, 5, 600, "user:true"};
    auto bytes = encode_fork_server_request(request);
    auto header = decode_fork_server_header(
        std::span<const std::byte, kForkServerHeaderSize>(bytes.data(), kForkServerHeaderSize));
    EXPECT_EQ(header.type, MSG_JUST_EXEC);
    EXPECT_EQ(header.connect_domain, 5);
    EXPECT_EQ(header.connect_port, 600);
    EXPECT_EQ(header.cmdline_len, 10u);
}

TEST(TriggerLayout, IdentPatchUsesTheSharedTable) {
    for (uint32_t type : {MSG_TRIGGER_SERVICE, MSG_TRIGGER_SERVICE3, MSG_TRIGGER_SERVICE4}) {
        TriggerRequest request;
        request.type = type;
        request.target_domain = "vault";
        request.service_name = "qubes.Svc";
        request.ident = make_ident("old");
        auto payload = encode_trigger(request);
        ASSERT_TRUE(set_trigger_ident(type, payload, make_socket_ident(17)));
        auto layout = *trigger_layout(type);
        EXPECT_EQ(get_fixed_string(std::span(payload).subspan(layout.ident.offset, kIdentSize)),
                  "SOCKET17");
        EXPECT_EQ(get_fixed_string(std::span(payload).subspan(layout.target.offset, 5)), "vault");
        EXPECT_FALSE(set_trigger_ident(type, std::span(payload).first(layout.fixed_size - 1),
                                       make_ident("x")));
    }
    std::vector<std::byte> any(200);
    EXPECT_FALSE(set_trigger_ident(MSG_DATA_STDIN, any, make_ident("x")));
}

#include "protocol/domains.h"

TEST(Domains, Dom0HasThreeNamesAndNoOthers) {
    EXPECT_TRUE(is_dom0("dom0"));
    EXPECT_TRUE(is_dom0("@adminvm"));
    EXPECT_TRUE(is_dom0("uuid:00000000-0000-0000-0000-000000000000"));
    EXPECT_FALSE(is_dom0("uuid:00000000-0000-0000-0000-000000000001"));
    EXPECT_FALSE(is_dom0("Dom0"));
    EXPECT_FALSE(is_dom0("dom0 "));
    EXPECT_FALSE(is_dom0("00000000-0000-0000-0000-000000000000"));
    EXPECT_FALSE(is_dom0(""));
}
