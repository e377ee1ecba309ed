// qrexec-lab demo: a guided tour on the built-in example lab.
#include "lab/cli.h"

#include "io/fd.h"
#include "io/process.h"
#include "lab/domain_user.h"
#include "lab/embedded.h"

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

int self_run(const Context& ctx, std::vector<std::string> args, const std::string& input = "",
             bool show = true) {
    std::string shown = "qrexec-lab";
    for (const auto& a : args)
        shown += " " + (a.find_first_of(" '\"") == std::string::npos ? a : "'" + a + "'");
    if (show) {
        if (!input.empty())
            fmt::print("\n  $ echo '{}' | {}\n", input, shown);
        else
            fmt::print("\n  $ {}\n", shown);
    }
    std::fflush(stdout);
    io::FdPair in = io::make_pipe();
    std::string self = self_executable();
    args.insert(args.begin(), {"qrexec-lab", "--state-dir=" + ctx.paths.root});
    io::Child child = io::spawn({in.first.get(), -1, -1}, [&]() -> int {
        io::close_fds_from(3);
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(self.c_str(), argv.data());
        return 127;
    });
    in.first.reset();
    if (!input.empty()) io::write_all(in.second.get(), input + "\n");
    in.second.reset();
    int status = child.wait();
    if (show) fmt::print("  => exit status {}\n", status);
    std::fflush(stdout);
    return status;
}

void say(const std::string& text) {
    fmt::print("\n{}\n", text);
    std::fflush(stdout);
}

// Run as root, the demo's domains run as `nobody` (root owns the lab file):
// they must reach the temp folder and own their folders (demo.FileIn writes
// there). The policy and the lab file stay root's.
bool hand_domains_to_their_users(const std::string& dir) {
    if (getuid() != 0) return true;
    if (chmod(dir.c_str(), 0755) != 0) return false;
    auto loaded = load_lab(dir + "/lab.toml", RealHost());
    if (!loaded.lab) return false;
    if (!assign_domain_users(*loaded.lab, 0, "root").empty()) return false;
    for (const auto& d : loaded.lab->domains) {
        struct passwd* pw = getpwnam(d.user.c_str());
        if (!pw) return false;
        uid_t uid = pw->pw_uid;
        gid_t gid = pw->pw_gid;
        std::error_code ec;
        if (lchown(d.folder.c_str(), uid, gid) != 0) return false;
        for (const auto& entry : fs::recursive_directory_iterator(d.folder, ec))
            if (lchown(entry.path().c_str(), uid, gid) != 0) return false;
        if (ec) return false;
    }
    return true;
}

} // namespace

int cmd_demo(const Context& ctx, const Args& args) {
    bool keep = !args.empty() && args[0] == "--keep";
    if (auto running = load_running(ctx.paths, true)) {
        fmt::print(stderr,
                   "qrexec-lab demo: a lab is already up in {}\n  hint: 'qrexec-lab down' "
                   "first, or give the demo its own --state-dir\n",
                   ctx.paths.root);
        return 1;
    }
    char tmpl[] = "/tmp/qrexec-lab-demo-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    std::string dir = tmpl;
    if (!write_embedded_example(dir) || !hand_domains_to_their_users(dir)) {
        fmt::print(stderr, "qrexec-lab demo: cannot write the example lab to {}\n", dir);
        return 1;
    }
    say(fmt::format("== qrexec-lab demo ==\nThe example lab was written to {}.\nIt has three "
                    "domains: 'work' and 'personal' (plain folders) and 'vault'\n(a bubblewrap "
                    "sandbox that sees only its own folder). Its policy is\n{}/policy/"
                    "30-lab.policy. Bringing it up:",
                    dir, dir));
    int up = self_run(ctx, {"up", dir + "/lab.toml"});
    if (up != 0) {
        say("The lab did not come up; see the message above.");
        return up;
    }
    int failures = 0;
    auto step = [&](const std::string& text, std::vector<std::string> cmd, int expect,
                    const std::string& input = "") {
        say(text);
        int got = self_run(ctx, std::move(cmd), input);
        if (got != expect) {
            ++failures;
            fmt::print("  (expected exit status {}, got {})\n", expect, got);
        }
    };
    step("1. ALLOWED: work calls demo.Echo in personal. The policy line\n"
         "   'demo.Echo * @anyvm @anyvm allow' lets any domain echo to any other.",
         {"call", "work", "personal", "demo.Echo"}, 0, "hello from work");
    step("2. ALLOWED with an argument: work copies a file into personal\n"
         "   (demo.FileIn+notes.txt writes it under personal's incoming/work/).",
         {"call", "work", "personal", "demo.FileIn+notes.txt"}, 0, "meeting at 10");
    step("   dom0 can look inside personal with 'run' (like qvm-run --pass-io):",
         {"run", "personal", "cat " + dir + "/personal/incoming/work/notes.txt"}, 0);
    step("3. DENIED: personal may not read the vault. The catch-all rule\n"
         "   '* * @anyvm @anyvm deny' refuses it; the caller gets 126 and\n"
         "   'Request refused', and the vault's service never runs.",
         {"call", "personal", "vault", "demo.VaultGet+password"}, 126);
    say("4. ASKED: work may read the vault only if someone says yes. The rule is\n"
        "   'demo.VaultGet * work vault ask default_target=vault'. On a terminal\n"
        "   you are asked; without one the lab's setting (ask = \"allow\" in\n"
        "   this lab.toml) answers.");
    {
        int got = self_run(ctx, {"call", "work", "vault", "demo.VaultGet+password"});
        say(got == 0 ? "   The vault answered: the ask was allowed."
                     : "   The ask was denied (126): the vault stayed shut.");
    }
    step("5. FAILING calls. A service that fails passes its exit status through:",
         {"call", "work", "personal", "demo.Fail"}, 3);
    step("   A service the target does not have: allowed by policy, but 127:",
         {"call", "work", "personal", "demo.Missing"}, 127);
    step("   A target that does not exist becomes @default in the policy -> denied:",
         {"call", "work", "nosuchdomain", "demo.Echo"}, 126);
    step("6. ISOLATION: vault runs in a sandbox. From inside it, work's folder\n"
         "   does not exist, while the vault's own secrets do:",
         {"shell", "vault", "--", "/bin/sh", "-c",
          "ls " + dir + "/work 2>&1 | head -1; ls " + dir + "/vault"},
         0);
    say("7. THE LOG: one line per call, with the policy line that decided it.");
    self_run(ctx, {"log"}, "", true);
    if (keep) {
        say(fmt::format("The lab stays up (state dir {}). Stop it with: qrexec-lab "
                        "--state-dir={} down",
                        ctx.paths.root, ctx.paths.root));
        return failures ? 1 : 0;
    }
    say("8. Taking the lab down: every process stops, every socket goes.");
    self_run(ctx, {"down"});
    std::error_code ec;
    fs::remove_all(dir, ec);
    say(failures ? fmt::format("demo finished with {} unexpected result(s).", failures)
                 : "demo finished: every call behaved as explained.");
    return failures ? 1 : 0;
}

} // namespace qrexec::lab
