#include "lab/launch.h"
#include "lab/state.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <unistd.h>

namespace qrexec::lab {
namespace {

LabState sample() {
    LabState s;
    s.lab.file = "/lab/lab.toml";
    s.lab.name = "demo";
    s.lab.policy = "/lab/policy";
    s.lab.ask = AskFallback::allow;
    s.lab.dom0.services = "/lab/dom0/rpc";
    Domain w;
    w.name = "work";
    w.tags = {"trusted"};
    w.folder = "/lab/work";
    w.services = "/lab/work/rpc";
    w.domid = 1;
    w.uuid = domain_uuid("work");
    Domain v = w;
    v.name = "vault";
    v.tags = {};
    v.folder = "/lab/vault";
    v.services = "/lab/vault/rpc";
    v.isolation = Isolation::sandbox;
    v.user = "nobody";
    v.domid = 2;
    v.uuid = domain_uuid("vault");
    s.lab.domains = {w, v};
    s.bin.agent = "/bin/qrexec-agent";
    s.bin.bwrap = "/usr/bin/bwrap";
    s.invoking_user = "alice";
    s.invoking_uid = 1000;
    return s;
}

TEST(State, LabStateRoundTrip) {
    LabState s = sample();
    std::string error;
    auto back = lab_state_from_json(lab_state_to_json(s), &error);
    ASSERT_TRUE(back) << error;
    EXPECT_EQ(back->lab.name, "demo");
    EXPECT_EQ(back->lab.ask, AskFallback::allow);
    ASSERT_EQ(back->lab.domains.size(), 2u);
    EXPECT_EQ(back->lab.domains[1].isolation, Isolation::sandbox);
    EXPECT_EQ(back->lab.domains[1].user, "nobody");
    EXPECT_EQ(back->lab.domains[0].tags, std::vector<std::string>{"trusted"});
    EXPECT_EQ(back->bin.agent, "/bin/qrexec-agent");
    EXPECT_EQ(back->invoking_uid, 1000u);
    EXPECT_FALSE(lab_state_from_json("{}", &error));
    EXPECT_FALSE(error.empty());
}

TEST(State, SystemInfoHasDom0AndDomains) {
    auto j = nlohmann::json::parse(system_info_json(sample().lab));
    const auto& d = j.at("domains");
    EXPECT_EQ(d.at("dom0").at("type"), "AdminVM");
    EXPECT_EQ(d.at("dom0").at("uuid"), "00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(d.at("work").at("tags")[0], "trusted");
    EXPECT_EQ(d.at("work").at("power_state"), "Running");
    EXPECT_EQ(d.at("vault").at("uuid"), domain_uuid("vault"));
    EXPECT_TRUE(d.at("vault").at("default_dispvm").is_null());
}

TEST(State, ComponentsRoundTrip) {
    Component c{"agent:work", "work", "agent", {42, 7}, "exited", "killed by signal 9", "/l"};
    bool ready = false;
    auto back = components_from_json(components_to_json({c}, true), &ready);
    EXPECT_TRUE(ready);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0].process.pid, 42);
    EXPECT_EQ(back[0].process.start_time, 7u);
    EXPECT_EQ(back[0].detail, "killed by signal 9");
    EXPECT_TRUE(components_from_json("junk", nullptr).empty());
}

TEST(State, ProcessIdentity) {
    auto self = process_id_of(getpid());
    ASSERT_TRUE(self);
    EXPECT_TRUE(self->alive());
    ProcessId wrong = *self;
    wrong.start_time += 1; // same pid, another process: not alive
    EXPECT_FALSE(wrong.alive());
    auto parsed = process_id_from_text(process_id_to_text(*self));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->pid, self->pid);
    EXPECT_FALSE(process_id_from_text("x"));
}

TEST(State, PathsAreInsideTheStateDir) {
    StatePaths p{"/s"};
    EXPECT_EQ(p.agent_socket("work"), "/s/run/work/agent.sock");
    EXPECT_EQ(p.daemon_socket(3), "/s/daemon/qrexec.3");
    EXPECT_EQ(p.vchan_dir(), "/s/vchan");
}

bool has_pair(const std::vector<std::string>& argv, const std::string& a, const std::string& b) {
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == a && argv[i + 1] == b) return true;
    return false;
}

TEST(Launch, SandboxSeesOnlyItsOwnFolder) {
    LabState s = sample();
    StatePaths p{"/s"};
    const Domain& vault = s.lab.domains[1];
    auto argv = sandbox_argv(vault, p, "/usr/bin/bwrap", {"/bin/qrexec-agent"},
                             {"/bin/qrexec-agent", "-S"});
    EXPECT_EQ(argv.front(), "/usr/bin/bwrap");
    EXPECT_TRUE(has_pair(argv, "--bind", "/lab/vault"));
    EXPECT_TRUE(has_pair(argv, "--bind", "/s/vchan"));
    EXPECT_TRUE(has_pair(argv, "--bind", "/s/run/vault"));
    EXPECT_TRUE(has_pair(argv, "--ro-bind", "/bin/qrexec-agent"));
    EXPECT_TRUE(has_pair(argv, "--chdir", "/lab/vault"));
    EXPECT_NE(std::find(argv.begin(), argv.end(), "--die-with-parent"), argv.end());
    for (const auto& a : argv) {
        EXPECT_EQ(a.find("/lab/work"), std::string::npos) << a;
        EXPECT_NE(a, "/lab/policy");
        EXPECT_NE(a, "/s"); // not the whole state dir
    }
    // The command comes last, after "--".
    auto dashes = std::find(argv.begin(), argv.end(), "--");
    ASSERT_NE(dashes, argv.end());
    EXPECT_EQ(*(dashes + 1), "/bin/qrexec-agent");
    EXPECT_EQ(argv.back(), "-S");
}

TEST(Launch, PlanAppliesUserAndSandbox) {
    LabState s = sample();
    StatePaths p{"/s"};
    auto plain = plan_in_domain(s, p, s.lab.domains[0], {"/x"}, {}, {});
    EXPECT_EQ(plain.argv, std::vector<std::string>{"/x"});
    EXPECT_TRUE(plain.user.empty());
    EXPECT_EQ(plain.cwd, "/lab/work");
    EXPECT_TRUE(plain.umask0); // vault runs as another user: sockets must be reachable
    auto boxed = plan_in_domain(s, p, s.lab.domains[1], {"/x"}, {}, {});
    EXPECT_EQ(boxed.argv.front(), "/usr/bin/bwrap");
    EXPECT_EQ(boxed.user, "nobody");
    EXPECT_EQ(boxed.env.at("HOME"), "/lab/vault");
}

} // namespace
} // namespace qrexec::lab
