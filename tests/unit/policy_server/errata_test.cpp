// POLICY.md Errata 1-9: for each item, the exact answer, qrexec-policy-exec's exit
// status and the decision's log line in all four modes (plain, --just-evaluate,
// --assume-yes-for-ask, both). No ask command is configured, so a plain `ask` is
// refused ("denied by the user"), as qrexec-policy-exec does without one.
#include "../policy/policy_fixture.h"
#include "policy_server/decision_log.h"

#include <gmock/gmock.h>

#include <array>

using namespace qrexec::policy;
using namespace qrexec::policy::fixtures;

namespace {

constexpr const char* kFile = "/etc/qubes/policy.d/10-test.policy";
constexpr const char* kWork = "11111111-0000-0000-0000-000000000001";
constexpr const char* kPersonal = "11111111-0000-0000-0000-000000000002";
constexpr const char* kVault = "11111111-0000-0000-0000-000000000003";
constexpr const char* kDvmTpl = "11111111-0000-0000-0000-000000000004";
constexpr const char* kRelay = "11111111-0000-0000-0000-000000000007";

// The §12 system plus a RemoteVM behind a relay, a RemoteVM without relay data, an
// internal VM and a VM whose default disposable template is not in the system info.
Domain vm(std::string name, std::string uuid, std::string type = "AppVM") {
    Domain d;
    d.name = std::move(name);
    d.uuid = std::move(uuid);
    d.type = std::move(type);
    return d;
}

SystemInfo errata_system() {
    SystemInfo sys = example_system();
    Domain relay = vm("relay", kRelay);
    relay.power_state = "Running";
    sys.add(relay);
    Domain far = vm("far", "11111111-0000-0000-0000-000000000008", "RemoteVM");
    far.relayvm = "relay";
    far.transport_rpc = "qubesair.SSHProxy";
    sys.add(far);
    sys.add(vm("lost", "11111111-0000-0000-0000-000000000009", "RemoteVM"));
    Domain internal = vm("internal-vm", "11111111-0000-0000-0000-00000000000a");
    internal.internal = true;
    internal.power_state = "Running";
    sys.add(internal);
    Domain stale = vm("stale", "11111111-0000-0000-0000-00000000000b");
    stale.default_dispvm = "gone-tpl";
    stale.power_state = "Running";
    sys.add(stale);
    return sys;
}

struct Expected {
    std::string answer; // Decision::answer ("result=allow" / "result=deny" when just evaluating)
    int status;         // qrexec-policy-exec's exit status
    std::string log;    // decision_log_line()
};

// Plain, --just-evaluate, --assume-yes-for-ask, both.
using FourModes = std::array<Expected, 4>;

// An allow that no mode changes: the full answer, or "result=allow" when just evaluating;
// `log` is the decision line up to its closing parenthesis.
FourModes allowed_in_every_mode(const std::string& full, const std::string& log) {
    Expected plain{full, 0, log + ")"};
    Expected just{"result=allow", 0, log + " (just evaluate))"};
    return {plain, just, plain, just};
}

std::string allow_answer(std::initializer_list<std::string> items) {
    return lines(items);
}

class Errata : public ::testing::Test {
  protected:
    SystemInfo sys = errata_system();

    void check(const Policy& policy, const Request& base, const FourModes& expected) {
        ASSERT_TRUE(policy.ok() || !expected[0].log.empty());
        for (int mode = 0; mode < 4; ++mode) {
            Request r = base;
            r.just_evaluate = mode == 1 || mode == 3;
            r.assume_yes_for_ask = mode == 2 || mode == 3;
            SCOPED_TRACE(::testing::Message()
                         << "mode " << mode << " (just_evaluate " << r.just_evaluate
                         << ", assume_yes " << r.assume_yes_for_ask << ")");
            Decision d = decide(policy, sys, r);
            ExecReport report = exec_report(d, r.just_evaluate);
            EXPECT_EQ(d.answer, expected[mode].answer);
            EXPECT_EQ(report.status, expected[mode].status);
            EXPECT_EQ(report.output, r.just_evaluate ? "" : d.answer + "\n");
            EXPECT_EQ(decision_log_line(d), expected[mode].log);
        }
    }
    void check(const std::string& policy_text, const Request& base, const FourModes& expected) {
        Policy p = load_one(policy_text);
        ASSERT_TRUE(p.ok()) << *p.error;
        check(p, base, expected);
    }
};

std::string at(int line) {
    return std::string(kFile) + ":" + std::to_string(line);
}

// The same in every mode.
FourModes always(const Expected& e) {
    return {e, e, e, e};
}

Expected deny(const std::string& log) {
    return {"result=deny", 1, log};
}

// ---- Errata 1: target= as written -------------------------------------------------

TEST_F(Errata, E1_UuidIntendedTargetIsPrintedAsWritten) {
    std::string uuid = std::string("uuid:") + kVault;
    std::string full =
        allow_answer({"user=DEFAULT", "result=allow", "target=" + uuid, "target_uuid=" + uuid,
                      "autostart=True", "requested_target=" + uuid});
    std::string log = "t.S+: work -> " + uuid + ": allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @anyvm allow\n", req("work", uuid, "t.S"),
          allowed_in_every_mode(full, log));
}

TEST_F(Errata, E1_DispvmUuidIntendedTargetIsPrintedAsWritten) {
    std::string target = std::string("@dispvm:uuid:") + kDvmTpl;
    std::string full =
        allow_answer({"user=DEFAULT", "result=allow", "target=" + target, "target_uuid=" + target,
                      "autostart=True", "requested_target=" + target});
    std::string log = "t.S+: work -> " + target + ": allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @anyvm allow\n", req("work", target, "t.S"),
          allowed_in_every_mode(full, log));
}

TEST_F(Errata, E1_UuidRedirectIsPrintedAsWrittenAndDispvmByTemplateName) {
    std::string uuid = std::string("uuid:") + kPersonal;
    std::string full =
        allow_answer({"user=DEFAULT", "result=allow", "target=" + uuid, "target_uuid=" + uuid,
                      "autostart=True", "requested_target=@default"});
    std::string log = "t.S+: work -> " + uuid + ": allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @default allow target=" + uuid + "\n", req("work", "", "t.S"),
          allowed_in_every_mode(full, log));

    std::string disp = allow_answer({"user=DEFAULT", "result=allow", "target=@dispvm:dvm-tpl",
                                     std::string("target_uuid=@dispvm:uuid:") + kDvmTpl,
                                     "autostart=True", "requested_target=@dispvm"});
    std::string dlog = "t.S+: work -> @dispvm:dvm-tpl: allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @dispvm allow\n", req("work", "@dispvm", "t.S"),
          allowed_in_every_mode(disp, dlog));
}

// ---- Errata 2: loopback is a string comparison --------------------------------------

TEST_F(Errata, E2_OwnUuidIsNotLoopback) {
    std::string uuid = std::string("uuid:") + kWork;
    std::string full =
        allow_answer({"user=DEFAULT", "result=allow", "target=" + uuid, "target_uuid=" + uuid,
                      "autostart=True", "requested_target=" + uuid});
    std::string log = "t.S+: work -> " + uuid + ": allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @anyvm allow\n", req("work", uuid, "t.S"),
          allowed_in_every_mode(full, log));
}

TEST_F(Errata, E2_DisposableOfTheSourceIsNotLoopback) {
    std::string full = allow_answer({"user=DEFAULT", "result=allow", "target=@dispvm:dvm-tpl",
                                     std::string("target_uuid=@dispvm:uuid:") + kDvmTpl,
                                     "autostart=True", "requested_target=@dispvm:dvm-tpl"});
    std::string log = "t.S+: dvm-tpl -> @dispvm:dvm-tpl: allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @anyvm allow\n", req("dvm-tpl", "@dispvm:dvm-tpl", "t.S"),
          allowed_in_every_mode(full, log));
}

TEST_F(Errata, E2_Dom0RedirectedToAdminvmIsLoopback) {
    // Loopback is an answer-time check: --just-evaluate skips it (errata 3).
    std::string loop = "t.S+: dom0 -> dom0: denied: loopback qrexec connection not supported";
    std::string ok =
        "t.S+: dom0 -> dom0: allowed (allowed by policy " + at(1) + " (just evaluate))";
    check(
        "t.S * dom0 @anyvm allow target=@adminvm\n", req("dom0", "personal", "t.S"),
        {deny(loop), Expected{"result=allow", 0, ok}, deny(loop), Expected{"result=allow", 0, ok}});
}

// ---- Errata 3: --just-evaluate runs §7 steps 1-5 and the §8 choice list ------------

TEST_F(Errata, E3_JustEvaluateStillResolves) {
    check("t.S * @anyvm @anyvm allow autostart=no\n", req("work", "vault", "t.S"),
          always(deny("t.S+: work -> vault: denied: target vault is not running and "
                      "autostart=no at " +
                      at(1))));
    check("t.S * @anyvm @anyvm allow target=@dispvm\n", req("vault", "work", "t.S"),
          always(deny("t.S+: vault -> work: denied: policy define 'allow' action to @dispvm at " +
                      at(1) + " but no DispVM base is set for this VM")));
    check("t.S * @anyvm vault ask\n", req("vault", "vault", "t.S"),
          always(deny("t.S+: vault -> vault: denied: policy define 'ask' action at " + at(1) +
                      " but no target is available to choose from")));
}

TEST_F(Errata, E3_RemoteVmRelayCheckIsAnswerTime) {
    std::string log = "t.S+: work -> lost: ";
    check("t.S * @anyvm @anyvm allow\n", req("work", "lost", "t.S"),
          {deny(log + "denied: remote target lost has no relayvm/transport_rpc"),
           Expected{"result=allow", 0,
                    log + "allowed (allowed by policy " + at(1) + " (just evaluate))"},
           deny(log + "denied: remote target lost has no relayvm/transport_rpc"),
           Expected{"result=allow", 0,
                    log + "allowed (allowed by policy " + at(1) + " (just evaluate))"}});
}

// ---- Errata 4: @dispvm:X verified wherever it is a target ----------------------------

TEST_F(Errata, E4_DispvmOfANonTemplate) {
    check("t.S * @anyvm @anyvm allow\n", req("work", "@dispvm:vault", "t.S"),
          always(deny("t.S+: work -> @dispvm:vault: denied: not a template for dispvm: vault")));
    check("t.S * @anyvm @anyvm allow target=@dispvm:vault\n", req("work", "personal", "t.S"),
          always(deny("t.S+: work -> personal: denied: not a template for dispvm: vault")));
    check("t.S * @anyvm @anyvm ask target=@dispvm:nosuch\n", req("work", "personal", "t.S"),
          always(deny("t.S+: work -> personal: denied: not a template for dispvm: nosuch")));
}

// ---- Errata 5: an unknown redirect becomes @default -----------------------------------

TEST_F(Errata, E5_UnknownRedirectHasNoTarget) {
    Policy p = load_one("t.S * @anyvm @anyvm allow target=nosuch\n");
    check(p, req("work", "personal", "t.S"),
          always(deny("t.S+: work -> personal: denied: policy define 'allow' action at " + at(1) +
                      " but no target is specified by caller or policy")));
    Decision d = decide(p, sys, req("work", "personal", "t.S"));
    EXPECT_EQ(d.warnings,
              std::vector<std::string>{"target 'nosuch' does not exist, using @default instead"});
}

// ---- Errata 6: !compat-4.0 without the legacy directory -------------------------------

TEST_F(Errata, E6_Compat40WithoutLegacyDirectoryDeniesEverything) {
    MemoryLoader loader;
    loader.add_dir(kRunDir);
    loader.add_file(kFile, "!compat-4.0\n* * @anyvm @anyvm allow\n");
    Policy p = load_policy(loader, default_paths());
    ASSERT_FALSE(p.ok());
    std::string error = at(1) + ": failed to load /etc/qubes-rpc/policy file: [Errno 2] No such "
                                "file or directory";
    EXPECT_EQ(*p.error, error);
    check(p, req("work", "personal", "t.S"),
          always(deny("t.S+: work -> personal: denied: error loading policy: " + error)));
}

// ---- Errata 7: missing records fail closed --------------------------------------------

TEST_F(Errata, E7_UnknownOrEmptySource) {
    check("t.S * @anyvm @anyvm allow\n", req("ghost", "personal", "t.S"),
          always(deny("t.S+: ghost -> personal: denied: source 'ghost' is not in the system "
                      "information")));
    check("t.S * * @anyvm allow\n", req("", "personal", "t.S"),
          always(deny("t.S+:  -> personal: denied: source '' is not in the system information")));
}

TEST_F(Errata, E7_AskNamingAMissingVm) {
    check("t.S * @anyvm @anyvm ask target=nosuch\n", req("work", "nosuch", "t.S"),
          always(deny("t.S+: work -> @default: denied: target nosuch does not exist")));
    check("t.S * @anyvm @anyvm ask default_target=nosuch\n", req("work", "personal", "t.S"),
          always(deny("t.S+: work -> personal: denied: default_target: target nosuch does not "
                      "exist")));
}

TEST_F(Errata, E7_DisposableOfAnUnknownTemplate) {
    check("t.S * @anyvm @anyvm allow\n", req("stale", "@dispvm", "t.S"),
          always(deny("t.S+: stale -> @dispvm:gone-tpl: denied: disposable template gone-tpl "
                      "does not exist")));
}

// ---- Errata 8: RemoteVM service= names the resolved remote qube -----------------------

TEST_F(Errata, E8_RemoteVmServiceLineNamesTheRemoteQube) {
    std::string full = allow_answer(
        {"user=DEFAULT", "result=allow", "target=relay", std::string("target_uuid=uuid:") + kRelay,
         "autostart=True", "requested_target=@default", "service=qubesair.SSHProxy+far+t.S+"});
    std::string log = "t.S+: work -> far: allowed (allowed by policy " + at(1);
    check("t.S * @anyvm @default allow target=far user=u\n", req("work", "", "t.S"),
          allowed_in_every_mode(full, log));
}

// ---- Errata 9: ask target= offers exactly that target ---------------------------------

TEST_F(Errata, E9_AskTargetKeepsTheSourceAndInternalVms) {
    std::string refused = "t.S+: work -> work: denied: denied by the user";
    std::string loop = "t.S+: work -> work: denied: loopback qrexec connection not supported";
    std::string ok =
        "t.S+: work -> work: allowed (allowed by the user to work (" + at(1) + ") (just evaluate))";
    check("t.S * @anyvm @anyvm ask target=work\n", req("work", "work", "t.S"),
          {deny(refused),
           deny("t.S+: work -> work: denied: denied for non-interactive ask (just evaluate)"),
           deny(loop), Expected{"result=allow", 0, ok}});

    std::string full = allow_answer({"user=DEFAULT", "result=allow", "target=internal-vm",
                                     "target_uuid=uuid:11111111-0000-0000-0000-00000000000a",
                                     "autostart=False", "requested_target=internal-vm"});
    std::string log = "t.S+: work -> internal-vm: ";
    check("t.S * @anyvm @anyvm ask target=internal-vm autostart=no\n",
          req("work", "internal-vm", "t.S"),
          {deny(log + "denied: denied by the user"),
           deny(log + "denied: denied for non-interactive ask (just evaluate)"),
           Expected{full, 0, log + "allowed (allowed by the user to internal-vm (" + at(1) + "))"},
           Expected{"result=allow", 0,
                    log + "allowed (allowed by the user to internal-vm (" + at(1) +
                        ") (just evaluate))"}});
}

TEST_F(Errata, E9_AskTargetStillFilteredByAutostart) {
    check("t.S * @anyvm @anyvm ask target=vault autostart=no\n", req("work", "vault", "t.S"),
          always(deny("t.S+: work -> vault: denied: policy define 'ask' action at " + at(1) +
                      " but no target is available to choose from")));
}

} // namespace
