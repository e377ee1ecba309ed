// libFuzzer target: the policy.d parser (new and legacy syntax) and evaluating the
// result. Any input must either parse or raise PolicySyntaxError — never crash.
#include "policy/engine.h"

#include <cstddef>
#include <cstdint>
#include <string>

using namespace qrexec::policy;

namespace {
const SystemInfo& system() {
    static const SystemInfo info = [] {
        std::string err;
        return *parse_system_info(
            R"({"domains": {"dom0": {"type": "AdminVM", "power_state": "Running"},
                "work": {"tags": ["t"], "uuid": "11111111-0000-0000-0000-000000000001",
                         "default_dispvm": "dvm", "power_state": "Running"},
                "dvm": {"template_for_dispvms": true, "uuid": "11111111-0000-0000-0000-000000000002"},
                "r": {"type": "RemoteVM", "relayvm": "work", "transport_rpc": "x.Y"}}})",
            &err);
    }();
    return info;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    MemoryLoader loader;
    loader.add_dir("/run/qubes/policy.d");
    loader.add_file("/etc/qubes/policy.d/50-fuzz.policy", text);
    // Targets for !include / !include-dir / !include-service / !compat-4.0 (including
    // a self-include loop).
    loader.add_file("/etc/qubes/policy.d/include/a", "a.B * @anyvm @anyvm allow\n");
    loader.add_file("/etc/qubes/policy.d/include/self", "!include include/self\n");
    loader.add_file("/etc/qubes-rpc/policy/x.Y+z", text);
    loader.add_file("/etc/qubes-rpc/policy/x.Y", "$anyvm $anyvm ask,default_target=$dispvm\n");
    PolicyPaths paths;
    paths.dirs = PolicyPaths::default_dirs();
    Policy policy = load_policy(loader, paths);
    try {
        parse_legacy_text(loader, text, "/legacy", "x.Y", "+z", "/etc/qubes-rpc/policy");
    } catch (const PolicySyntaxError&) {
    }
    (void)lint_policy(loader, paths);
    for (const char* target : {"", "work", "@dispvm", "@adminvm", "@dispvm:dvm", "r", "nope"}) {
        Request r;
        r.source = "work";
        r.intended_target = target;
        r.service_and_arg = "x.Y+z";
        Decision d = evaluate(policy, system(), r);
        if (d.outcome == Outcome::Ask) {
            (void)answer_ask(d, system(), std::string("work"));
            if (!d.ask->targets.empty()) (void)answer_ask(d, system(), d.ask->targets[0]);
        }
        (void)trace_rules(policy, system(), r);
    }
    return 0;
}
