// --policy-in-process: option/env switch, request mapping, the policy cache
// (load, inotify reload, syntax error) and one evaluation (allow, deny, ask)
// on a real event loop with files in a temporary directory.
#include "daemon/inprocess_policy.h"
#include "daemon/options.h"
#include "daemon/policy.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

using namespace qrexec;
using namespace qrexec::daemon;

namespace {

constexpr const char* kSystem = R"({"domains": {
  "dom0": {"type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000",
           "power_state": "Running", "tags": []},
  "work": {"type": "AppVM", "uuid": "00000000-0000-0000-0000-000000000005",
           "power_state": "Running", "tags": []},
  "vault": {"type": "AppVM", "uuid": "00000000-0000-0000-0000-000000000006",
            "power_state": "Running", "tags": []}}})";

class TempTree {
  public:
    TempTree() {
        char pattern[] = "/tmp/dp-unit-XXXXXX";
        root_ = ::mkdtemp(pattern);
        std::filesystem::create_directories(root_ + "/run.d");
        std::filesystem::create_directories(root_ + "/etc.d");
        write_atomic(root_ + "/system.json", kSystem);
    }
    ~TempTree() {
        std::error_code ignored;
        std::filesystem::remove_all(root_, ignored);
    }
    const std::string& root() const { return root_; }
    std::string etc(const std::string& name) const { return root_ + "/etc.d/" + name; }
    std::string run(const std::string& name) const { return root_ + "/run.d/" + name; }

    // Written next to the target and renamed, so a reader never sees half a file.
    void write_atomic(const std::string& path, const std::string& text) const {
        std::string tmp = root_ + "/.tmp";
        std::ofstream(tmp) << text;
        std::filesystem::rename(tmp, path);
    }

    InProcessConfig config() const {
        InProcessConfig c;
        c.paths.dirs = {root_ + "/run.d", root_ + "/etc.d"};
        c.paths.legacy_dir = root_ + "/legacy";
        c.system_info_file = root_ + "/system.json";
        c.qubesd_socket = root_ + "/qubesd.sock";
        return c;
    }

  private:
    std::string root_;
};

// Runs the loop until pred() holds; false after a deadline (no fixed sleeps).
bool run_until(io::EventLoop& loop, const std::function<bool()>& pred,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        loop.run_once(std::chrono::milliseconds(50));
    }
    return true;
}

PolicyQuery query(const std::string& service, const std::string& target = "vault") {
    return PolicyQuery{"work", std::string(), target, service};
}

// Evaluates one query; the reply text, once it is there.
struct Evaluated {
    std::unique_ptr<PolicyEvaluation> evaluation;
    std::optional<std::string> reply;
};

std::unique_ptr<Evaluated> evaluate(io::EventLoop& loop, const PolicyCache& cache,
                                    const PolicyQuery& q) {
    auto out = std::make_unique<Evaluated>();
    auto* raw = out.get();
    testing::internal::CaptureStderr(); // the decision log line
    out->evaluation = std::make_unique<PolicyEvaluation>(
        loop, cache, q, "test", [raw](std::string reply) { raw->reply = std::move(reply); });
    out->evaluation->run();
    testing::internal::GetCapturedStderr();
    return out;
}

std::unique_ptr<PolicyCache> make_cache(io::EventLoop& loop, const InProcessConfig& config) {
    testing::internal::CaptureStderr(); // load log lines
    auto cache = std::make_unique<PolicyCache>(loop, config);
    testing::internal::GetCapturedStderr();
    return cache;
}

} // namespace

TEST(InProcessSwitch, EnvFlag) {
    EXPECT_FALSE(env_flag_enabled(nullptr));
    EXPECT_FALSE(env_flag_enabled(""));
    EXPECT_FALSE(env_flag_enabled("0"));
    EXPECT_FALSE(env_flag_enabled("no"));
    EXPECT_TRUE(env_flag_enabled("1"));
    EXPECT_TRUE(env_flag_enabled("yes"));
    EXPECT_TRUE(env_flag_enabled("true"));
}

TEST(InProcessSwitch, LongOptionOnly) {
    std::vector<std::string> storage{"qrexec-daemon", "--policy-in-process", "-u", "U", "5",
                                     "work"};
    std::vector<char*> argv;
    for (auto& s : storage)
        argv.push_back(s.data());
    auto out = parse_options(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(out.options);
    EXPECT_TRUE(out.options->policy_in_process);
    EXPECT_NE(usage_text("qrexec-daemon").find("--policy-in-process"), std::string::npos);
}

TEST(InProcessRequest, SameFieldsAsThePolicySocket) {
    auto r = engine_request(PolicyQuery{"work", std::string("relay"), "@default", "svc+arg"});
    EXPECT_EQ(r.source, "work");
    EXPECT_EQ(r.requested_source, "relay");
    EXPECT_EQ(r.intended_target, "@default");
    EXPECT_EQ(r.service_and_arg, "svc+arg");
    EXPECT_FALSE(r.assume_yes_for_ask);
    EXPECT_FALSE(r.just_evaluate);
    EXPECT_EQ(engine_request(PolicyQuery{"work", std::nullopt, "", "s"}).requested_source, "");
}

TEST(InProcessPolicy, AllowReplyGoesThroughTheStrictParser) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"), "qubes.Test * work vault allow user=bob\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    EXPECT_EQ(cache->generation(), 1u);
    ASSERT_TRUE(cache->policy()->ok());
    auto e = evaluate(loop, *cache, query("qubes.Test+x"));
    ASSERT_TRUE(e->reply); // allow/deny need no I/O: answered inside run()
    auto parse = parse_policy_reply(*e->reply);
    ASSERT_TRUE(parse.decision) << parse.error << " in " << *e->reply;
    EXPECT_TRUE(parse.decision->allow);
    EXPECT_EQ(parse.decision->user, "bob");
    EXPECT_EQ(parse.decision->target, "vault");
}

TEST(InProcessPolicy, DenyAndLocation) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"), "# x\nqubes.Test * work vault deny\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    auto e = evaluate(loop, *cache, query("qubes.Test"));
    ASSERT_TRUE(e->reply);
    auto parse = parse_policy_reply(*e->reply);
    ASSERT_TRUE(parse.decision);
    EXPECT_FALSE(parse.decision->allow);

    policy::Request r = engine_request(query("qubes.Test"));
    std::string error;
    auto system = cache->system_info(&error);
    ASSERT_TRUE(system) << error;
    auto d = policy::evaluate(*cache->policy(), *system, r);
    EXPECT_EQ(decision_location(d, *cache->policy()), tree.etc("30-test.policy") + ":2");
    auto none = policy::evaluate(*cache->policy(), *system, engine_request(query("other")));
    EXPECT_EQ(decision_location(none, *cache->policy()), "no rule");
}

TEST(InProcessPolicy, ReloadOnNewFileKeepsOldSnapshot) {
    TempTree tree;
    tree.write_atomic(tree.etc("90-default.policy"), "* * @anyvm @anyvm deny\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    auto before = cache->policy();
    tree.write_atomic(tree.etc("10-new.policy"), "qubes.Test * work vault allow\n");
    testing::internal::CaptureStderr();
    bool reloaded = run_until(loop, [&] { return cache->generation() >= 2; });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    EXPECT_EQ(before->rules.size(), 1u); // the old snapshot is untouched
    EXPECT_EQ(cache->policy()->rules.size(), 2u);
    auto e = evaluate(loop, *cache, query("qubes.Test"));
    ASSERT_TRUE(e->reply);
    auto parse = parse_policy_reply(*e->reply);
    ASSERT_TRUE(parse.decision) << *e->reply;
    EXPECT_TRUE(parse.decision->allow);
}

TEST(InProcessPolicy, SyntaxErrorDeniesEverythingWithLocation) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"), "qubes.Test * work vault allow\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    tree.write_atomic(tree.etc("20-bad.policy"), "\nqubes.Test * work vault perhaps\n");
    testing::internal::CaptureStderr();
    bool reloaded = run_until(loop, [&] { return cache->generation() >= 2; });
    std::string log = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    EXPECT_NE(log.find(tree.etc("20-bad.policy") + ":2"), std::string::npos) << log;
    ASSERT_FALSE(cache->policy()->ok());
    auto e = evaluate(loop, *cache, query("qubes.Test"));
    ASSERT_TRUE(e->reply);
    EXPECT_EQ(*e->reply, "result=deny");
    std::string error;
    auto d = policy::evaluate(*cache->policy(), *cache->system_info(&error),
                              engine_request(query("qubes.Test")));
    EXPECT_EQ(decision_location(d, *cache->policy()), tree.etc("20-bad.policy") + ":2");
}

TEST(InProcessPolicy, SystemInfoFileReloadIsNoPolicyReload) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"), "qubes.Test * work vault allow\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    std::string error;
    auto first = cache->system_info(&error);
    ASSERT_TRUE(first);
    tree.write_atomic(tree.root() + "/system.json", R"({"domains": {}})");
    testing::internal::CaptureStderr();
    bool reloaded = run_until(loop, [&] { return cache->system_info(&error) != first; });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    EXPECT_TRUE(cache->system_info(&error)->domains().empty());
    EXPECT_EQ(cache->generation(), 1u);
    // Broken JSON: no system info, every call denied.
    tree.write_atomic(tree.root() + "/system.json", "{");
    testing::internal::CaptureStderr();
    reloaded = run_until(loop, [&] { return cache->system_info(&error) == nullptr; });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    auto e = evaluate(loop, *cache, query("qubes.Test"));
    ASSERT_TRUE(e->reply);
    EXPECT_EQ(*e->reply, "result=deny");
}

TEST(InProcessPolicy, AskCommandRunsInTheLoop) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"),
                      "qubes.Ask * work @anyvm ask default_target=vault\n");
    auto config = tree.config();
    config.ask_command = "cat >/dev/null; echo allow:vault";
    io::EventLoop loop;
    auto cache = make_cache(loop, config);
    auto e = evaluate(loop, *cache, query("qubes.Ask"));
    EXPECT_FALSE(e->reply); // the command's answer comes later, from the loop
    testing::internal::CaptureStderr();
    bool answered = run_until(loop, [&] { return e->reply.has_value(); });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(answered);
    auto parse = parse_policy_reply(*e->reply);
    ASSERT_TRUE(parse.decision) << *e->reply;
    EXPECT_TRUE(parse.decision->allow);
    EXPECT_EQ(parse.decision->target, "vault");
}

TEST(InProcessPolicy, AskWithoutCommandDeniesAtOnce) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"),
                      "qubes.Ask * work @anyvm ask default_target=vault\n");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    auto e = evaluate(loop, *cache, query("qubes.Ask"));
    ASSERT_TRUE(e->reply);
    EXPECT_EQ(*e->reply, "result=deny");
}

TEST(InProcessPolicy, DestroyingAPendingAskKillsTheCommand) {
    TempTree tree;
    tree.write_atomic(tree.etc("30-test.policy"),
                      "qubes.Ask * work @anyvm ask default_target=vault\n");
    auto config = tree.config();
    std::string pidfile = tree.root() + "/ask.pid";
    config.ask_command = "echo $$ > " + pidfile + "; exec sleep 1000";
    io::EventLoop loop;
    auto cache = make_cache(loop, config);
    auto e = evaluate(loop, *cache, query("qubes.Ask"));
    ASSERT_TRUE(run_until(loop, [&] { return std::filesystem::exists(pidfile); }));
    int pid = 0;
    ASSERT_TRUE(run_until(loop, [&] {
        std::ifstream(pidfile) >> pid;
        return pid > 0;
    }));
    e->evaluation.reset(); // e.g. the request timed out
    EXPECT_FALSE(e->reply);
    EXPECT_NE(::kill(pid, 0), 0); // killed and reaped
}

TEST(InProcessPolicy, MissingPolicyDirectoryNoticedWhenCreated) {
    TempTree tree;
    std::filesystem::remove(tree.root() + "/run.d");
    io::EventLoop loop;
    auto cache = make_cache(loop, tree.config());
    EXPECT_FALSE(cache->policy()->ok());
    std::filesystem::create_directory(tree.root() + "/run.d");
    testing::internal::CaptureStderr();
    bool reloaded = run_until(loop, [&] { return cache->generation() >= 2; });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    EXPECT_TRUE(cache->policy()->ok());
    // And the directory itself is watched now.
    tree.write_atomic(tree.run("10-a.policy"), "qubes.Test * work vault allow\n");
    testing::internal::CaptureStderr();
    reloaded = run_until(loop, [&] { return cache->generation() >= 3; });
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(reloaded);
    EXPECT_EQ(cache->policy()->rules.size(), 1u);
}
