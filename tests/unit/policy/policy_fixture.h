// Shared test fixture: the POLICY.md §12 system and helpers around MemoryLoader.
#pragma once

#include "policy/engine.h"

#include <gtest/gtest.h>

#include <string>

namespace qrexec::policy::fixtures {

inline constexpr const char* kRunDir = "/run/qubes/policy.d";
inline constexpr const char* kEtcDir = "/etc/qubes/policy.d";

inline SystemInfo example_system() {
    std::string error;
    auto info = parse_system_info(R"({"domains": {
 "dom0": {"tags": [], "type": "AdminVM", "uuid": "00000000-0000-0000-0000-000000000000",
          "power_state": "Running", "default_dispvm": "dvm-tpl", "icon": "adminvm-black"},
 "work": {"tags": ["trusted"], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000001",
          "default_dispvm": "dvm-tpl", "power_state": "Running", "guivm": "dom0",
          "icon": "appvm-blue"},
 "personal": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000002",
          "default_dispvm": "dvm-tpl", "power_state": "Running", "icon": "appvm-yellow"},
 "vault": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000003",
          "default_dispvm": null, "power_state": "Halted", "icon": "appvm-black"},
 "dvm-tpl": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000004",
          "template_for_dispvms": true, "power_state": "Halted", "icon": "appvm-red"},
 "untrusted": {"tags": [], "type": "AppVM", "uuid": "11111111-0000-0000-0000-000000000005",
          "power_state": "Running", "icon": "appvm-red"}
}})",
                                  &error);
    EXPECT_TRUE(info) << error;
    return *info;
}

inline constexpr const char* kDemoPolicy =
    "qubes.Filecopy  *       untrusted     @anyvm     deny\n"
    "qubes.Filecopy  *       @anyvm        vault      ask   default_target=vault\n"
    "qubes.Filecopy  *       @tag:trusted  @anyvm     allow\n"
    "demo.Echo       +       @anyvm        @default   allow target=personal\n"
    "demo.Echo       +hello  work          @dispvm    allow\n"
    "demo.Echo       *       @anyvm        @adminvm   allow user=root\n"
    "demo.Vault      *       @anyvm        vault      allow autostart=no\n"
    "*               *       @anyvm        @anyvm     deny  notify=no\n";

// A loader with both default policy directories present (and empty).
inline MemoryLoader base_loader() {
    MemoryLoader loader;
    loader.add_dir(kRunDir);
    loader.add_dir(kEtcDir);
    loader.add_dir("/etc/qubes-rpc/policy");
    return loader;
}

inline PolicyPaths default_paths() {
    PolicyPaths paths;
    paths.dirs = PolicyPaths::default_dirs();
    return paths;
}

inline Policy load_one(const std::string& text, const std::string& name = "10-test.policy") {
    MemoryLoader loader = base_loader();
    loader.add_file(std::string(kEtcDir) + "/" + name, text);
    return load_policy(loader, default_paths());
}

inline Request req(std::string source, std::string target, std::string service) {
    Request r;
    r.source = std::move(source);
    r.intended_target = std::move(target);
    r.service_and_arg = std::move(service);
    return r;
}

inline std::string lines(std::initializer_list<std::string> items) {
    std::string out;
    for (const auto& s : items)
        out += (out.empty() ? "" : "\n") + s;
    return out;
}

} // namespace qrexec::policy::fixtures
