// PROTOCOL.md §6.3: agent->daemon header checks and TRIGGER validation.
#include "protocol/trigger.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace qrexec::protocol;

namespace {

std::vector<std::byte> bytes(std::string_view text) {
    auto span = as_bytes(text);
    return {span.begin(), span.end()};
}

void put(std::vector<std::byte>& out, std::string_view text, size_t field) {
    std::vector<std::byte> f(field);
    for (size_t i = 0; i < text.size() && i < field; ++i)
        f[i] = static_cast<std::byte>(text[i]);
    out.insert(out.end(), f.begin(), f.end());
}

std::vector<std::byte> v4(std::string_view source, std::string_view target, std::string_view ident,
                          std::string_view name_area) {
    std::vector<std::byte> p;
    put(p, source, 64);
    put(p, target, 64);
    put(p, ident, 32);
    auto n = bytes(name_area);
    p.insert(p.end(), n.begin(), n.end());
    return p;
}

std::vector<std::byte> v3(std::string_view target, std::string_view ident,
                          std::string_view name_area) {
    std::vector<std::byte> p;
    put(p, target, 64);
    put(p, ident, 32);
    auto n = bytes(name_area);
    p.insert(p.end(), n.begin(), n.end());
    return p;
}

std::vector<std::byte> v2(std::string_view service, std::string_view target,
                          std::string_view ident) {
    std::vector<std::byte> p;
    put(p, service, 64);
    put(p, target, 32);
    put(p, ident, 32);
    return p;
}

using namespace std::string_view_literals;

} // namespace

// ---- header level -----------------------------------------------------------

TEST(AgentHeader, TriggerTypesPerVersion) {
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE, 128}, 2));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE, 128}, 3));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE, 128}, 4));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE3, 100}, 2));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE3, 100}, 3));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE3, 100}, 4)); // not listed as fatal
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE4, 170}, 3));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE4, 170}, 4));
}

TEST(AgentHeader, TriggerLengths) {
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE, 127}, 2));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE, 129}, 2));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE3, 96}, 3));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE3, 97}, 3));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE3, 96 + 65000}, 3));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE3, 96 + 65001}, 3));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE4, 160}, 4));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE4, 161}, 4));
    EXPECT_FALSE(check_agent_header({MSG_TRIGGER_SERVICE4, 160 + 65000}, 4));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE4, 160 + 65001}, 4));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE4, 0xFFFFFFFFu}, 4));
    EXPECT_TRUE(check_agent_header({MSG_TRIGGER_SERVICE4, 0}, 4));
}

TEST(AgentHeader, ConnectionTerminatedAndOthers) {
    EXPECT_FALSE(check_agent_header({MSG_CONNECTION_TERMINATED, 8}, 4));
    EXPECT_TRUE(check_agent_header({MSG_CONNECTION_TERMINATED, 7}, 4));
    EXPECT_TRUE(check_agent_header({MSG_CONNECTION_TERMINATED, 9}, 4));
    for (uint32_t type : {MSG_HELLO, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, MSG_SERVICE_CONNECT,
                          MSG_SERVICE_REFUSED, MSG_DATA_STDIN, MSG_DATA_EXIT_CODE}) {
        EXPECT_TRUE(check_agent_header({type, 8}, 4)) << type;
    }
    auto reason = check_agent_header({0x999, 0}, 4);
    ASSERT_TRUE(reason);
    EXPECT_NE(reason->find("0x999"), std::string::npos);
}

// ---- sanitising / ident / service-name rules -----------------------------------

TEST(Sanitize, ReplacesOutsideAllowedSet) {
    EXPECT_EQ(sanitize_name("abc-XYZ_0.9", kDomainExtraChars), "abc-XYZ_0.9");
    EXPECT_EQ(sanitize_name("@dispvm:tpl", kDomainExtraChars), "@dispvm:tpl");
    EXPECT_EQ(sanitize_name("@dispvm:tpl", kServiceExtraChars), "_dispvm_tpl");
    EXPECT_EQ(sanitize_name("svc+arg", kServiceExtraChars), "svc+arg");
    EXPECT_EQ(sanitize_name("svc+arg", kDomainExtraChars), "svc_arg");
    EXPECT_EQ(sanitize_name("a b/c\xff\n", ""), "a_b_c__");
    EXPECT_EQ(sanitize_name("", ""), "");
}

TEST(Ident, Rules) {
    auto ident = [](std::string_view text) { return make_ident(text); };
    EXPECT_TRUE(is_valid_ident(ident("")));
    EXPECT_TRUE(is_valid_ident(ident("SOCKET12")));
    EXPECT_TRUE(is_valid_ident(ident("a b.c-d_E9")));
    EXPECT_FALSE(is_valid_ident(ident("a/b")));
    EXPECT_FALSE(is_valid_ident(ident("a+b")));
    EXPECT_FALSE(is_valid_ident(ident("a\tb")));
    Ident full{};
    full.fill(std::byte{'A'});
    EXPECT_FALSE(is_valid_ident(full)); // no NUL at all
    full[31] = std::byte{0};
    EXPECT_TRUE(is_valid_ident(full)); // 31 chars + NUL
    Ident junk = ident("S1");
    junk[5] = std::byte{'x'};
    EXPECT_FALSE(is_valid_ident(junk)); // non-NUL after the first NUL
    EXPECT_EQ(ident_text(ident("SOCKET7")), "SOCKET7");
}

TEST(ServiceName, Rules) {
    EXPECT_TRUE(is_acceptable_service_name("qubes.Svc"));
    EXPECT_TRUE(is_acceptable_service_name("qubes.Svc+"));
    EXPECT_TRUE(is_acceptable_service_name("a+b+c"));
    EXPECT_FALSE(is_acceptable_service_name(""));
    EXPECT_FALSE(is_acceptable_service_name("+arg"));
}

TEST(FixedField, LastByteIsNul) {
    auto f = bytes("abcd");
    EXPECT_EQ(fixed_field_text(f), "abc");
    auto g = bytes("ab\0d"sv);
    EXPECT_EQ(fixed_field_text(g), "ab");
    EXPECT_EQ(fixed_field_text({}), "");
}

// ---- decoding -------------------------------------------------------------------

TEST(DecodeTrigger, V4Valid) {
    auto p = v4("src", "vault", "SOCKET5", "qubes.Filecopy+a\0"sv);
    auto r = decode_trigger(MSG_TRIGGER_SERVICE4, p);
    ASSERT_TRUE(r.valid) << r.error;
    EXPECT_EQ(r.valid->requested_source, "src");
    EXPECT_EQ(r.valid->target, "vault");
    EXPECT_EQ(r.valid->service, "qubes.Filecopy+a");
    EXPECT_EQ(ident_text(r.valid->ident), "SOCKET5");
    EXPECT_EQ(r.ident, make_ident("SOCKET5"));
}

TEST(DecodeTrigger, V4EmptySourceAndTargetAreValid) {
    auto r = decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "", "", "s\0"sv));
    ASSERT_TRUE(r.valid);
    EXPECT_EQ(r.valid->requested_source, "");
    EXPECT_EQ(r.valid->target, "");
}

TEST(DecodeTrigger, V4SanitisesFields) {
    auto r = decode_trigger(MSG_TRIGGER_SERVICE4, v4("@a:b!", "t/x@:", "I", "s/v+a@:\xff\0"sv));
    ASSERT_TRUE(r.valid);
    EXPECT_EQ(r.valid->requested_source, "@a:b_");
    EXPECT_EQ(r.valid->target, "t_x@:");
    EXPECT_EQ(r.valid->service, "s_v+a___");
}

TEST(DecodeTrigger, V4FullFieldsAreTruncated) {
    std::string target(64, 't');
    auto r = decode_trigger(MSG_TRIGGER_SERVICE4, v4(std::string(64, 's'), target, "I", "x\0"sv));
    ASSERT_TRUE(r.valid);
    EXPECT_EQ(r.valid->target, std::string(63, 't'));
    EXPECT_EQ(*r.valid->requested_source, std::string(63, 's'));
}

TEST(DecodeTrigger, V4NameMustEndInSingleNul) {
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "I", "svc"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "I", "s\0c\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "I", "svc\0\0"sv)).valid);
}

TEST(DecodeTrigger, RefusedKeepsRawIdent) {
    std::vector<std::byte> p = v4("", "t", "", "svc\0"sv);
    for (size_t i = 0; i < 32; ++i)
        p[128 + i] = std::byte{'Z'};
    auto r = decode_trigger(MSG_TRIGGER_SERVICE4, p);
    EXPECT_FALSE(r.valid);
    EXPECT_EQ(r.ident[0], std::byte{'Z'});
    EXPECT_EQ(r.ident[31], std::byte{'Z'});
    EXPECT_FALSE(r.error.empty());
}

TEST(DecodeTrigger, EmptyOrPlusServiceRefused) {
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "I", "\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "I", "+x\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE3, v3("t", "I", "+\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE, v2("", "t", "I")).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE, v2("+a", "t", "I")).valid);
}

TEST(DecodeTrigger, BadIdentRefused) {
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, v4("", "t", "a/b", "s\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE3, v3("t", "a$", "s\0"sv)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE, v2("s", "t", "a:b")).valid);
}

TEST(DecodeTrigger, V3Valid) {
    auto r = decode_trigger(MSG_TRIGGER_SERVICE3, v3("@default", "7", "svc+arg\0"sv));
    ASSERT_TRUE(r.valid);
    EXPECT_FALSE(r.valid->requested_source);
    EXPECT_EQ(r.valid->target, "@default");
    EXPECT_EQ(r.valid->service, "svc+arg");
}

TEST(DecodeTrigger, V2Valid) {
    auto r = decode_trigger(MSG_TRIGGER_SERVICE, v2("svc+a", "tgt", "X"));
    ASSERT_TRUE(r.valid);
    EXPECT_FALSE(r.valid->requested_source);
    EXPECT_EQ(r.valid->service, "svc+a");
    EXPECT_EQ(r.valid->target, "tgt");
    // full fixed fields: the last byte is dropped
    auto full =
        decode_trigger(MSG_TRIGGER_SERVICE, v2(std::string(64, 's'), std::string(32, 't'), "X"));
    ASSERT_TRUE(full.valid);
    EXPECT_EQ(full.valid->service, std::string(63, 's'));
    EXPECT_EQ(full.valid->target, std::string(31, 't'));
}

TEST(DecodeTrigger, TotalOnWrongSizes) {
    // Never reached after check_agent_header, but the decoder must not overread.
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE4, bytes("short")).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE, std::vector<std::byte>(127)).valid);
    EXPECT_FALSE(decode_trigger(MSG_TRIGGER_SERVICE3, std::vector<std::byte>(96)).valid);
    EXPECT_FALSE(decode_trigger(MSG_HELLO, std::vector<std::byte>(200)).valid);
}
