#include "lab/multihost.h"
#include "lab/state.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>

namespace qrexec::lab {
namespace {

TEST(MultiHost, HostTablesMakeAMultiHostLab) {
    EXPECT_TRUE(is_multi_host_text("[[host]]\nname = \"a\"\n"));
    EXPECT_FALSE(is_multi_host_text("[[domain]]\nname = \"work\"\n"));
    EXPECT_FALSE(is_multi_host_text("this is [not toml"));
}

TEST(MultiHost, RemoteDomainsAppearAsRemoteVMsBehindTheRelay) {
    Lab lab;
    Domain relay;
    relay.name = "relay-a";
    relay.uuid = domain_uuid("relay-a");
    lab.domains = {relay};
    lab.air.relay = "relay-a";
    lab.air.remotes = {{"archive", "relay-a", "qubesair.SSHProxy", {"backup"}}};
    auto info = nlohmann::json::parse(system_info_json(lab));
    const auto& archive = info["domains"]["archive"];
    EXPECT_EQ(archive["type"], "RemoteVM");
    EXPECT_EQ(archive["relayvm"], "relay-a");
    EXPECT_EQ(archive["transport_rpc"], "qubesair.SSHProxy");
    EXPECT_EQ(archive["tags"], nlohmann::json::array({"backup"}));
    EXPECT_TRUE(info["domains"]["relay-a"]["relayvm"].is_null());
}

TEST(MultiHost, AirSideRoundTrips) {
    AirSide air;
    air.relay = "relay-b";
    air.ssh_dir = "/s/beta/air";
    air.services_dir = "/s/beta/air/services";
    air.sshd = "/usr/sbin/sshd";
    air.sshd_config = "/s/beta/air/sshd_config";
    air.sshd_pid_file = "/s/beta/air/sshd.pid";
    air.remotes = {{"work", "relay-b", "qubesair.SSHProxy", {}}};
    auto back = air_side_from_json(air_side_to_json(air), nullptr);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->relay, "relay-b");
    EXPECT_EQ(back->sshd_pid_file, air.sshd_pid_file);
    ASSERT_EQ(back->remotes.size(), 1u);
    EXPECT_EQ(back->remotes[0].name, "work");
    std::string error;
    EXPECT_FALSE(air_side_from_json("{}", &error));
    EXPECT_FALSE(error.empty());
}

TEST(MultiHost, StateRoundTripsAndFindsTheHostOfADomain) {
    AirState s{"air",
               "/x/lab.toml",
               {{"alpha", "/s/alpha", "/x/a.toml", 4026532000ULL, {"work"}},
                {"beta", "/s/beta", "/x/b.toml", 4026532001ULL, {"archive"}}}};
    auto back = air_state_from_json(air_state_to_json(s));
    ASSERT_TRUE(back);
    ASSERT_EQ(back->hosts.size(), 2u);
    EXPECT_EQ(back->hosts[1].netns, 4026532001ULL);
    EXPECT_EQ(air_host_of(*back, "archive", "call"), "/s/beta");
    EXPECT_EQ(air_host_of(*back, "nosuch", "call"), "");
    EXPECT_FALSE(air_state_from_json("[]"));
}

// The repository's examples/air.
std::string example_air() {
    return std::string(QREXEC_SOURCE_DIR) + "/examples/air/lab.toml";
}

TEST(MultiHost, LoadsTheExampleAndExportsAllButTheRelays) {
    auto result = load_air_lab(example_air(), RealHost());
    ASSERT_TRUE(result.lab) << (result.errors.empty() ? "" : result.errors[0].format());
    ASSERT_EQ(result.lab->hosts.size(), 2u);
    const AirHost& alpha = result.lab->hosts[0];
    EXPECT_EQ(alpha.name, "alpha");
    EXPECT_EQ(alpha.relay, "relay-a");
    ASSERT_EQ(alpha.exported().size(), 1u);
    EXPECT_EQ(alpha.exported()[0]->name, "work");
}

TEST(MultiHost, RejectsADomainOnTwoHostsAndAMissingRelay) {
    namespace fs = std::filesystem;
    fs::path dir =
        fs::temp_directory_path() / ("qrexec-multihost-test-" + std::to_string(getpid()));
    fs::create_directories(dir);
    fs::path example = fs::path(example_air()).parent_path();
    auto write = [&](const std::string& text) {
        write_file_atomic((dir / "lab.toml").string(), text);
        return load_air_lab((dir / "lab.toml").string(), RealHost());
    };
    std::string alpha = (example / "alpha/lab.toml").string();
    auto twice = write("[[host]]\nname = \"a\"\nlab = \"" + alpha +
                       "\"\nrelay = \"relay-a\"\n[[host]]\nname = \"b\"\nlab = \"" + alpha +
                       "\"\nrelay = \"relay-a\"\n");
    ASSERT_FALSE(twice.lab);
    EXPECT_NE(twice.errors[0].message.find("is on hosts 'a' and 'b'"), std::string::npos);
    std::string beta = (example / "beta/lab.toml").string();
    auto no_relay = write("[[host]]\nname = \"a\"\nlab = \"" + alpha +
                          "\"\nrelay = \"relay-b\"\n[[host]]\nname = \"b\"\nlab = \"" + beta +
                          "\"\nrelay = \"relay-b\"\n");
    ASSERT_FALSE(no_relay.lab);
    EXPECT_NE(no_relay.errors[0].message.find("no domain 'relay-b'"), std::string::npos);
    auto one = write("[[host]]\nname = \"a\"\nlab = \"" + alpha + "\"\nrelay = \"relay-a\"\n");
    EXPECT_FALSE(one.lab);
    fs::remove_all(dir);
}

} // namespace
} // namespace qrexec::lab
