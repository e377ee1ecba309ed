// Policy engine speed: a decision against 1,000 rules, a full reload of 1,000 rules from
// disk, and the policy daemon's answer over its socket.
#include "io/event_loop.h"
#include "policy_server/policy_server.h"
#include "policy/engine.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace qrexec;
using namespace qrexec::policy;

namespace {

constexpr int kRules = 1000;

std::string system_json() {
    std::string doms = R"("dom0": {"type": "AdminVM", "power_state": "Running"})";
    for (int i = 0; i < 50; ++i)
        doms += fmt::format(R"(, "vm{}": {{"type": "AppVM", "tags": ["t{}"], "uuid": )"
                            R"("00000000-0000-0000-0001-{:012}", "power_state": "Running", )"
                            R"("default_dispvm": "dvm"}})",
                            i, i % 5, i);
    doms +=
        R"(, "dvm": {"type": "AppVM", "template_for_dispvms": true, "uuid": "00000000-0000-0000-0002-000000000000"})";
    return "{\"domains\": {" + doms + "}}";
}

// 1,000 varied rules; the benchmark request only matches the very last one.
std::string policy_text(int first, int count) {
    std::string text;
    for (int i = first; i < first + count; ++i) {
        switch (i % 4) {
        case 0:
            text += fmt::format("svc.S{} * @anyvm @anyvm allow\n", i);
            break;
        case 1:
            text += fmt::format("svc.S{} +arg{} @tag:t1 vm{} allow user=u\n", i, i, i % 50);
            break;
        case 2:
            text += fmt::format(
                "svc.S{} * @type:AppVM @dispvm:dvm ask default_target=@dispvm:dvm\n", i);
            break;
        case 3:
            text +=
                fmt::format("svc.S{} * vm{} @default allow target=vm{}\n", i, i % 50, (i + 1) % 50);
            break;
        }
    }
    return text;
}

struct Fixture {
    SystemInfo system;
    Policy policy;
    Fixture() {
        std::string err;
        system = *parse_system_info(system_json(), &err);
        MemoryLoader loader;
        loader.add_dir("/p");
        loader.add_file("/p/50-bench.policy",
                        policy_text(0, kRules - 1) + "target.Svc * @anyvm @anyvm allow\n");
        PolicyPaths paths;
        paths.dirs = {"/p"};
        policy = load_policy(loader, paths);
        if (!policy.ok() || policy.rules.size() != kRules) std::abort();
    }
};

void BM_Decision1000Rules(benchmark::State& state) {
    static Fixture f;
    Request r;
    r.source = "vm3";
    r.intended_target = "vm7";
    r.service_and_arg = "target.Svc+x";
    for (auto _ : state) {
        Decision d = evaluate(f.policy, f.system, r);
        benchmark::DoNotOptimize(d);
        if (!d.allowed()) state.SkipWithError("not allowed");
    }
}
BENCHMARK(BM_Decision1000Rules)->Unit(benchmark::kMicrosecond);

std::string make_tree() {
    char tmpl[] = "/tmp/policy-bench-XXXXXX";
    std::string root = ::mkdtemp(tmpl);
    std::filesystem::create_directories(root + "/run");
    std::filesystem::create_directories(root + "/etc");
    std::filesystem::create_directories(root + "/legacy");
    // 1,000 rules over 10 files, like a real policy.d.
    for (int f = 0; f < 10; ++f) {
        std::ofstream out(fmt::format("{}/etc/{:02}-bench.policy", root, f * 10));
        out << policy_text(f * 100, 100);
    }
    std::ofstream(root + "/system.json") << system_json();
    return root;
}

void BM_Reload1000Rules(benchmark::State& state) {
    static std::string root = make_tree();
    FsLoader loader;
    PolicyPaths paths;
    paths.dirs = {root + "/run", root + "/etc"};
    paths.legacy_dir = root + "/legacy";
    for (auto _ : state) {
        Policy p = load_policy(loader, paths);
        if (p.rules.size() != kRules) state.SkipWithError("wrong rule count");
        benchmark::DoNotOptimize(p);
    }
}
BENCHMARK(BM_Reload1000Rules)->Unit(benchmark::kMillisecond);

void BM_DaemonAnswer(benchmark::State& state) {
    static std::string root = make_tree();
    { std::ofstream(root + "/etc/99-target.policy") << "target.Svc * @anyvm @anyvm allow\n"; }
    DaemonConfig config;
    config.paths.dirs = {root + "/run", root + "/etc"};
    config.paths.legacy_dir = root + "/legacy";
    config.socket_path = root + "/policy.sock";
    config.eval_socket_path.clear();
    config.gui_socket_path.clear();
    config.system_info_file = root + "/system.json";
    config.log_decisions = false;
    std::atomic<bool> stop{false};
    std::atomic<bool> ready{false};
    std::thread server([&] {
        io::EventLoop loop;
        PolicyDaemon daemon(loop, config);
        daemon.start();
        ready = true;
        while (!stop)
            loop.run_once(std::chrono::milliseconds(20));
    });
    while (!ready)
        std::this_thread::yield();
    const std::string req = "source=vm3\nintended_target=vm7\nservice_and_arg=target.Svc+x\n\n";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, config.socket_path.c_str(), sizeof addr.sun_path - 1);
    for (auto _ : state) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            state.SkipWithError("connect failed");
            ::close(fd);
            break;
        }
        ssize_t w = ::write(fd, req.data(), req.size());
        (void)w;
        char buf[4096];
        size_t total = 0;
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0)
            total += static_cast<size_t>(n);
        ::close(fd);
        if (total == 0) state.SkipWithError("no answer");
    }
    stop = true;
    server.join();
}
BENCHMARK(BM_DaemonAnswer)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
