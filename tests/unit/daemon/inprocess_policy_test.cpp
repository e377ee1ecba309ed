// --policy-in-process: option/env switch, request mapping, the policy cache
// (load, inotify reload, syntax error) and one evaluation (allow, deny, ask)
// on a real event loop with files in a temporary directory.
#include "daemon/inprocess_policy.h"
#include "daemon/options.h"
#include "daemon/policy_client.h"
#include "policy/tools.h"
#include "policy_server/decision_log.h"
#include "policy_server/policy_server.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
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

std::unique_ptr<Evaluated> evaluate(io::EventLoop& loop, const InProcessPolicy& cache,
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

std::unique_ptr<InProcessPolicy> make_cache(io::EventLoop& loop, const InProcessConfig& config) {
    testing::internal::CaptureStderr(); // load log lines
    auto cache = std::make_unique<InProcessPolicy>(loop, config);
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

// ---- Generative agreement ------------------------------------------------------
// Seeded random policy directories, system information and requests: the four
// consumers of the policy cache must give the same answer for every case —
// qrexec-policy-exec's decision (answer + exit status), the policy daemon over
// its socket, this daemon's in-process evaluation, and explain's decision line.
// QREXEC_POLICY_AGREEMENT_CASES / _SEED change the size and the seed.

namespace {

std::string format_rules(const policy::Policy& p) {
    std::string out;
    for (const auto& rule : p.rules)
        out += policy::format_rule(rule) + "\n";
    return out;
}

struct GeneratedVm {
    std::string name, uuid;
};

class CaseGenerator {
  public:
    explicit CaseGenerator(uint32_t seed) : rng_(seed) {}

    // System info JSON; remembers the VMs for the tokens below.
    std::string system_json() {
        static const std::vector<std::string> pool = {"work", "personal", "vault", "dvm",
                                                      "dvm2", "far",      "relay", "sys-net"};
        vms_.clear();
        std::string json = R"({"domains": {"dom0": {"type": "AdminVM", "power_state": )"
                           R"("Running", "uuid": "00000000-0000-0000-0000-000000000000", )"
                           R"("tags": [], "default_dispvm": )" +
                           maybe_name_json() + "}";
        size_t count = 3 + pick(pool.size() - 2);
        for (size_t i = 0; i < count; ++i) {
            GeneratedVm vm{pool[i], "22222222-0000-0000-0000-00000000000" + std::to_string(i)};
            vms_.push_back(vm);
        }
        for (const auto& vm : vms_) {
            bool remote = vm.name == "far" && chance(2);
            std::string tags = chance(2) ? R"(["t1"])" : chance(2) ? R"(["t1", "t2"])" : "[]";
            json += ", \"" + vm.name + "\": {\"uuid\": \"" + vm.uuid + "\", \"type\": \"" +
                    (remote      ? "RemoteVM"
                     : chance(4) ? "TemplateVM"
                                 : "AppVM") +
                    "\", \"tags\": " + tags + ", \"power_state\": \"" +
                    (chance(3) ? "Halted" : "Running") + "\", \"template_for_dispvms\": " +
                    (vm.name.starts_with("dvm") || chance(6) ? "true" : "false") +
                    ", \"default_dispvm\": " + maybe_name_json() +
                    ", \"internal\": " + (chance(8) ? "true" : "false");
            if (remote && chance(4) != 0)
                json += R"(, "relayvm": "relay", "transport_rpc": "qubesair.SSHProxy")";
            json += "}";
        }
        return json + "}}";
    }

    std::string policy_text() {
        std::string text;
        size_t rules = 2 + pick(7);
        for (size_t i = 0; i < rules; ++i) {
            if (chance(30)) {
                text += "!compat-4.0\n"; // the legacy directory is missing: load error
                continue;
            }
            std::string service = one_of({"s.A", "s.B", "*"});
            std::string argument = service == "*" ? "*" : one_of({"*", "+", "+x"});
            std::string action = one_of({"allow", "allow", "deny", "ask", "ask"});
            std::string target = target_column();
            std::string line =
                service + " " + argument + " " + source_column() + " " + target + " " + action;
            if (action != "deny" && (target == "@default" || chance(3)))
                line += " target=" + redirect();
            if (action == "ask" && chance(3)) line += " default_target=" + redirect();
            if (action != "deny" && chance(5)) line += " autostart=no";
            if (chance(6)) line += " user=u";
            text += line + "\n";
        }
        return text;
    }

    policy::Request request() {
        policy::Request r;
        r.source = chance(25) ? "ghost" : chance(12) ? "dom0" : vm().name;
        switch (pick(12)) {
        case 0:
            r.intended_target = "";
            break;
        case 1:
            r.intended_target = "uuid:" + vm().uuid;
            break;
        case 2:
            r.intended_target = "@dispvm";
            break;
        case 3:
            r.intended_target = "@dispvm:" + vm().name;
            break;
        case 4:
            r.intended_target = one_of({"@adminvm", "dom0", "nosuch", "@default", "@anyvm"});
            break;
        case 5:
            r.intended_target = "@dispvm:uuid:" + vm().uuid;
            break;
        default:
            r.intended_target = vm().name;
        }
        r.service_and_arg = one_of({"s.A", "s.A+x", "s.B+", "s.B+y", "s.C"});
        return r;
    }

  private:
    size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
    bool chance(size_t one_in) { return pick(one_in) == 0; }
    std::string one_of(std::initializer_list<const char*> items) {
        return *(items.begin() + pick(items.size()));
    }
    const GeneratedVm& vm() { return vms_[pick(vms_.size())]; }
    std::string maybe_name_json() {
        if (chance(3)) return "null";
        static const std::vector<std::string> names = {"dvm", "dvm2", "work", "gone"};
        return "\"" + names[pick(names.size())] + "\"";
    }
    std::string source_column() {
        switch (pick(6)) {
        case 0:
            return "*";
        case 1:
            return "@anyvm";
        case 2:
            return one_of({"@tag:t1", "@type:AppVM", "dom0"});
        default:
            return vm().name;
        }
    }
    std::string target_column() {
        switch (pick(9)) {
        case 0:
            return "*";
        case 1:
            return "@anyvm";
        case 2:
            return one_of({"@default", "@adminvm", "@dispvm", "@dispvm:@tag:t1"});
        case 3:
            return one_of({"@tag:t1", "@type:AppVM", "nosuch"});
        case 4:
            return "@dispvm:" + vm().name;
        case 5:
            return "uuid:" + vm().uuid;
        default:
            return vm().name;
        }
    }
    std::string redirect() {
        switch (pick(7)) {
        case 0:
            return one_of({"@adminvm", "@dispvm", "dom0", "nosuch"});
        case 1:
            return "@dispvm:" + vm().name;
        case 2:
            return "uuid:" + vm().uuid;
        default:
            return vm().name;
        }
    }

    std::mt19937 rng_;
    std::vector<GeneratedVm> vms_;
};

size_t env_size(const char* name, size_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoul(v, nullptr, 10) : fallback;
}

// The policy daemon's reply over its socket (the loop runs the server).
std::optional<std::string> ask_policy_socket(io::EventLoop& loop, const std::string& path,
                                             const policy::Request& r) {
    io::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        return std::nullopt;
    std::string text = "source=" + r.source + "\nintended_target=" + r.intended_target +
                       "\nservice_and_arg=" + r.service_and_arg +
                       "\njust_evaluate=" + (r.just_evaluate ? "yes" : "no") +
                       "\nassume_yes_for_ask=" + (r.assume_yes_for_ask ? "yes" : "no") + "\n\n";
    if (::send(fd.get(), text.data(), text.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(text.size()))
        return std::nullopt;
    std::string reply;
    bool eof = false;
    bool ok = run_until(loop, [&] {
        char buf[4096];
        for (;;) {
            ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
            if (n > 0) {
                reply.append(buf, static_cast<size_t>(n));
                continue;
            }
            eof = n == 0;
            return eof || (errno != EAGAIN && errno != EINTR);
        }
    });
    if (!ok || !eof) return std::nullopt;
    return reply;
}

std::string explain_decision(const policy::Policy& p, const policy::SystemInfo& system,
                             const policy::Request& r) {
    std::string text = policy::explain_text(p, system, r);
    auto at = text.find("\ndecision: ");
    if (at == std::string::npos) return "<none>";
    auto end = text.find('\n', at + 1);
    return text.substr(at + 11, end - at - 11);
}

const char* outcome_word(policy::Outcome o) {
    return o == policy::Outcome::Allow ? "allow" : o == policy::Outcome::Ask ? "ask" : "deny";
}

} // namespace

TEST(PolicyAgreement, FourConsumersGiveTheSameAnswer) {
    const size_t cases = env_size("QREXEC_POLICY_AGREEMENT_CASES", 2000);
    const uint32_t seed = static_cast<uint32_t>(env_size("QREXEC_POLICY_AGREEMENT_SEED", 8));
    CaseGenerator gen(seed);
    TempTree tree;
    io::EventLoop loop;
    size_t allowed = 0, mismatches = 0;
    constexpr size_t kRequestsPerTree = 4;
    for (size_t c = 0; c < cases && mismatches < 5; c += kRequestsPerTree) {
        tree.write_atomic(tree.root() + "/system.json", gen.system_json());
        tree.write_atomic(tree.etc("50-gen.policy"), gen.policy_text());
        testing::internal::CaptureStderr(); // load and decision log lines
        auto in_process = std::make_unique<InProcessPolicy>(loop, tree.config());
        policy::DaemonConfig server_config;
        server_config.paths = tree.config().paths;
        server_config.system_info_file = tree.root() + "/system.json";
        server_config.socket_path = tree.root() + "/policy.sock";
        server_config.eval_socket_path = "";
        server_config.gui_socket_path = "";
        server_config.log_decisions = false;
        auto server = std::make_unique<policy::PolicyDaemon>(loop, server_config);
        server->start();
        // The one-shot programs' view: the same cache type, loaded once.
        policy::CacheConfig once;
        once.paths = tree.config().paths;
        once.system_info_file = tree.root() + "/system.json";
        once.log = false;
        policy::PolicyCache exec_cache(once);
        std::string error;
        auto system = exec_cache.system_info(&error);
        auto policy = exec_cache.policy();
        for (size_t i = 0; i < kRequestsPerTree && system; ++i) {
            policy::Request base = gen.request();
            for (int mode = 0; mode < 4; ++mode) {
                policy::Request r = base;
                r.just_evaluate = mode & 1;
                r.assume_yes_for_ask = mode & 2;
                policy::Decision d = policy::decide(*policy, *system, r);
                policy::ExecReport exec = policy::exec_report(d, r.just_evaluate);
                std::string explain = explain_decision(*policy, *system, r);
                auto socket = ask_policy_socket(loop, server_config.socket_path, r);
                std::optional<std::string> inproc;
                if (mode == 0) {
                    // (not evaluate(): stderr is already being captured here)
                    PolicyEvaluation e(
                        loop, *in_process,
                        PolicyQuery{r.source, std::nullopt, r.intended_target, r.service_and_arg},
                        "case", [&](std::string reply) { inproc = std::move(reply); });
                    e.run();
                    run_until(loop, [&] { return inproc.has_value(); });
                }
                std::string first =
                    policy::evaluate(*policy, *system, r).outcome == policy::Outcome::Ask
                        ? "ask"
                        : outcome_word(d.outcome);
                bool agree =
                    socket == d.answer && explain == first && (exec.status == 0) == d.allowed() &&
                    (exec.status == 0) == (explain == "allow") && (mode != 0 || inproc == d.answer);
                allowed += exec.status == 0;
                if (!agree) {
                    ++mismatches;
                    ADD_FAILURE() << "case " << c + i << " mode " << mode << ": source '"
                                  << r.source << "' target '" << r.intended_target << "' "
                                  << r.service_and_arg << "\n--- exec (" << exec.status << "):\n"
                                  << d.answer << "\n--- socket:\n"
                                  << socket.value_or("<none>") << "\n--- in-process:\n"
                                  << inproc.value_or("<n/a>") << "\n--- explain: " << explain
                                  << "\n--- policy:\n"
                                  << (policy->ok() ? format_rules(*policy) : *policy->error);
                }
            }
        }
        server.reset();
        in_process.reset();
        testing::internal::GetCapturedStderr();
        ASSERT_TRUE(system) << error;
    }
    // The generator must reach both answers, or the comparison says little.
    EXPECT_GT(allowed, cases / 20);
    EXPECT_LT(allowed, cases * 4 * 19 / 20);
}
