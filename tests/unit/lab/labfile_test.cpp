#include "lab/labfile.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

namespace qrexec::lab {
namespace {

// Folders and users that "exist" for the tests.
class FakeHost final : public Host {
  public:
    std::set<std::string> dirs{"/lab",        "/lab/policy",    "/lab/work",       "/lab/work/rpc",
                               "/lab/vault",  "/lab/vault/rpc", "/lab/vault/conf", "/lab/dom0rpc",
                               "/lab/shared", "/lab/shared/rpc"};
    std::set<std::string> users{"alice"};
    std::vector<std::string> policy_files{"30-lab.policy"};
    bool is_dir(const std::string& p) const override { return dirs.count(p) != 0; }
    bool user_exists(const std::string& u) const override { return users.count(u) != 0; }
    std::vector<std::string> list_dir(const std::string&) const override { return policy_files; }
    bool is_regular_file(const std::string&) const override { return true; }
};

ParseResult parse(std::string_view text, const FakeHost& host = FakeHost()) {
    return parse_lab(text, "/lab/lab.toml", "/lab", host);
}

std::string first_error(const ParseResult& r) {
    return r.errors.empty() ? std::string("<no error>") : r.errors.front().format();
}

constexpr std::string_view good = R"(# a lab
[lab]
name = "demo"
policy = "policy"
ask = "allow"

[dom0]
services = "dom0rpc"

[[domain]]
name = "work"
tags = ["trusted", "office"]
services = "work/rpc"

[[domain]]
name = "vault"
type = "StandaloneVM"
services = "vault/rpc"
rpc_config = "vault/conf"
user = "alice"
isolation = "sandbox"
)";

TEST(LabFile, ParsesAGoodLab) {
    auto r = parse(good);
    ASSERT_TRUE(r.lab) << first_error(r);
    const Lab& lab = *r.lab;
    EXPECT_EQ(lab.name, "demo");
    EXPECT_EQ(lab.policy, "/lab/policy");
    EXPECT_EQ(lab.ask, AskFallback::allow);
    EXPECT_EQ(lab.dom0.services, "/lab/dom0rpc");
    ASSERT_EQ(lab.domains.size(), 2u);
    const Domain& work = lab.domains[0];
    EXPECT_EQ(work.name, "work");
    EXPECT_EQ(work.type, "AppVM");
    EXPECT_EQ(work.tags, (std::vector<std::string>{"trusted", "office"}));
    EXPECT_EQ(work.services, "/lab/work/rpc");
    EXPECT_EQ(work.folder, "/lab/work");
    EXPECT_EQ(work.domid, 1);
    EXPECT_EQ(work.isolation, Isolation::none);
    EXPECT_EQ(work.line, 10);
    const Domain& vault = lab.domains[1];
    EXPECT_EQ(vault.domid, 2);
    EXPECT_EQ(vault.type, "StandaloneVM");
    EXPECT_EQ(vault.rpc_config, "/lab/vault/conf");
    EXPECT_EQ(vault.user, "alice");
    EXPECT_EQ(vault.isolation, Isolation::sandbox);
    EXPECT_NE(work.uuid, vault.uuid);
    EXPECT_EQ(lab.find("vault"), &lab.domains[1]);
    EXPECT_EQ(lab.find("nope"), nullptr);
}

TEST(LabFile, UnknownKeyHasLineAndSuggestion) {
    auto r = parse(R"([lab]
policy = "policy"
[[domain]]
name = "work"
servces = "work/rpc"
)");
    ASSERT_FALSE(r.lab);
    // unknown key, and then services missing
    ASSERT_EQ(r.errors.size(), 2u);
    EXPECT_EQ(r.errors[0].line, 3); // the domain table: no services
    const Diagnostic& e = r.errors[1];
    EXPECT_EQ(e.line, 5);
    EXPECT_NE(e.message.find("servces"), std::string::npos);
    EXPECT_NE(e.hint.find("did you mean 'services'"), std::string::npos);
    EXPECT_EQ(e.format().substr(0, 16), "/lab/lab.toml:5:");
}

TEST(LabFile, UnknownTopLevelKeyAndTable) {
    auto r = parse(R"([lab]
policy = "policy"
colour = "blue"
[[domain]]
name = "work"
services = "work/rpc"
[extra]
)");
    ASSERT_FALSE(r.lab);
    ASSERT_EQ(r.errors.size(), 2u) << first_error(r);
    EXPECT_EQ(r.errors[0].line, 3);
    EXPECT_EQ(r.errors[1].line, 7);
}

TEST(LabFile, DuplicateNamesRejected) {
    auto r = parse(R"([lab]
policy = "policy"
[[domain]]
name = "work"
services = "work/rpc"
[[domain]]
name = "work"
services = "work/rpc"
)");
    ASSERT_FALSE(r.lab);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].line, 6);
    EXPECT_NE(r.errors[0].message.find("duplicate"), std::string::npos);
    EXPECT_NE(r.errors[0].hint.find("line 3"), std::string::npos);
}

TEST(LabFile, MissingFolderRejected) {
    auto r = parse(R"([lab]
policy = "policy"
[[domain]]
name = "work"
services = "work/services"
)");
    ASSERT_FALSE(r.lab);
    EXPECT_EQ(r.errors[0].line, 5);
    EXPECT_NE(r.errors[0].message.find("does not exist"), std::string::npos);
    EXPECT_NE(r.errors[0].hint.find("mkdir -p /lab/work/services"), std::string::npos);
}

TEST(LabFile, MissingPolicyFolderRejected) {
    auto r = parse(R"([lab]
policy = "nopolicy"
[[domain]]
name = "work"
services = "work/rpc"
)");
    ASSERT_FALSE(r.lab);
    EXPECT_EQ(r.errors[0].line, 2);
}

TEST(LabFile, InvalidNamesRejected) {
    for (std::string_view bad : {"1work", "wo rk", "dom0", "a$b", "default", "x-dm",
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ""}) {
        std::string text = fmt::format("[lab]\npolicy = \"policy\"\n[[domain]]\nname = \"{}\"\n"
                                       "services = \"work/rpc\"\n",
                                       bad);
        auto r = parse(text);
        EXPECT_FALSE(r.lab) << bad;
        if (!r.lab) {
            EXPECT_EQ(r.errors[0].line, 4) << bad;
            EXPECT_FALSE(r.errors[0].hint.empty());
        }
    }
    EXPECT_FALSE(check_domain_name("work-1.b_c"));
    EXPECT_FALSE(check_domain_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); // 31
}

TEST(LabFile, BadValuesRejected) {
    struct Case {
        std::string_view line;
        std::string_view needle;
    };
    for (auto c :
         {Case{"type = \"DispVM\"", "not supported"}, Case{"tags = \"x\"", "list of strings"},
          Case{"tags = [1]", "strings only"}, Case{"tags = [\"a b\"]", "contains"},
          Case{"tags = [\"a\", \"a\"]", "twice"}, Case{"user = \"bob\"", "does not exist"},
          Case{"isolation = \"vm\"", "not valid"}, Case{"type = 3", "must be a string"}}) {
        std::string text = fmt::format("[lab]\npolicy = \"policy\"\n[[domain]]\nname = \"w\"\n"
                                       "services = \"work/rpc\"\n{}\n",
                                       c.line);
        auto r = parse(text);
        ASSERT_FALSE(r.lab) << c.line;
        EXPECT_NE(r.errors[0].message.find(c.needle), std::string::npos)
            << c.line << ": " << r.errors[0].message;
        EXPECT_EQ(r.errors[0].line, 6) << c.line;
    }
}

TEST(LabFile, TomlSyntaxErrorHasLine) {
    auto r = parse("[lab]\npolicy = \"policy\"\n[[domain]]\nname = work\n");
    ASSERT_FALSE(r.lab);
    EXPECT_EQ(r.errors[0].line, 4);
}

TEST(LabFile, DuplicateTomlKeyHasLine) {
    auto r = parse("[lab]\npolicy = \"policy\"\npolicy = \"policy\"\n");
    ASSERT_FALSE(r.lab);
    EXPECT_EQ(r.errors[0].line, 3);
}

TEST(LabFile, NoDomainsOrLabTable) {
    EXPECT_FALSE(parse("[lab]\npolicy = \"policy\"\n").lab);
    EXPECT_FALSE(parse("[[domain]]\nname = \"w\"\nservices = \"work/rpc\"\n").lab);
}

TEST(LabFile, SandboxMustNotShareFolders) {
    auto r = parse(R"([lab]
policy = "policy"
[[domain]]
name = "a"
services = "work/rpc"
isolation = "sandbox"
folder = "/lab"
[[domain]]
name = "b"
services = "vault/rpc"
)");
    ASSERT_FALSE(r.lab);
    EXPECT_NE(first_error(r).find("would see the policy"), std::string::npos) << first_error(r);
}

TEST(LabFile, ServicesOutsideFolderRejected) {
    auto r = parse(R"([lab]
policy = "policy"
[[domain]]
name = "a"
services = "work/rpc"
folder = "vault"
)");
    ASSERT_FALSE(r.lab);
    EXPECT_EQ(r.errors[0].line, 3);
}

TEST(LabFile, BadPolicyFileName) {
    FakeHost host;
    host.policy_files = {"30-Lab.policy", "README", ".x.policy"};
    auto r = parse("[lab]\npolicy = \"policy\"\n[[domain]]\nname = \"w\"\nservices = "
                   "\"work/rpc\"\n",
                   host);
    ASSERT_FALSE(r.lab);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].message.find("30-Lab.policy"), std::string::npos);
}

TEST(LabFile, UuidIsStableAndWellFormed) {
    EXPECT_EQ(domain_uuid("work"), domain_uuid("work"));
    EXPECT_NE(domain_uuid("work"), domain_uuid("work2"));
    EXPECT_EQ(domain_uuid("work").size(), 36u);
    EXPECT_EQ(domain_uuid("work")[14], '4');
    EXPECT_EQ(domain_uuid("dom0"), "00000000-0000-0000-0000-000000000000");
}

} // namespace
} // namespace qrexec::lab
