#include "policy/engine.h"
#include "protocol/domains.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <utility>

namespace qrexec::policy {

namespace {

bool is_dom0(std::string_view v) {
    return protocol::is_dom0(v);
}

const Domain* find_vm(const SystemInfo& sys, std::string_view ref) {
    if (ref.empty() || ref[0] == '@') return nullptr;
    return sys.find(ref);
}

bool same_vm(const SystemInfo& sys, std::string_view a, std::string_view b) {
    if (a == b) return true;
    const Domain* da = find_vm(sys, a);
    return da && da == find_vm(sys, b);
}

std::optional<std::string> default_dispvm_of(const SystemInfo& sys, std::string_view source) {
    const Domain* d = find_vm(sys, source);
    if (!d || !d->default_dispvm) return std::nullopt;
    return d->default_dispvm;
}

// The disposable template a target value designates: "@dispvm:X" -> X, "@dispvm" ->
// the source's default_dispvm.
std::optional<std::string> dispvm_template_of(const SystemInfo& sys, std::string_view value,
                                              std::string_view source) {
    if (value == "@dispvm") return default_dispvm_of(sys, source);
    if (value.starts_with("@dispvm:") && !value.starts_with("@dispvm:@"))
        return std::string(value.substr(8));
    return std::nullopt;
}

bool token_matches(const Token& tok, std::string_view value, const SystemInfo& sys,
                   std::string_view source) {
    switch (tok.kind) {
    case TokenKind::Any:
        return true;
    case TokenKind::Literal:
        if (is_dom0(tok.text) || is_dom0(value)) return is_dom0(tok.text) && is_dom0(value);
        return same_vm(sys, tok.text, value);
    case TokenKind::AdminVM:
        return is_dom0(value);
    case TokenKind::AnyVM:
        return !is_dom0(value);
    case TokenKind::Default:
        return value == "@default";
    case TokenKind::Type: {
        const Domain* d = find_vm(sys, value);
        return d && d->type == tok.value;
    }
    case TokenKind::Tag: {
        const Domain* d = find_vm(sys, value);
        return d && d->has_tag(tok.value);
    }
    case TokenKind::DispVM:
        return value == "@dispvm";
    case TokenKind::DispVMTemplate: {
        auto tmpl = dispvm_template_of(sys, value, source);
        return tmpl && same_vm(sys, tok.value, *tmpl);
    }
    case TokenKind::DispVMTag: {
        auto tmpl = dispvm_template_of(sys, value, source);
        const Domain* d = tmpl ? find_vm(sys, *tmpl) : nullptr;
        return d && d->template_for_dispvms && d->has_tag(tok.value);
    }
    }
    return false;
}

std::string bool_text(bool b) {
    return b ? "True" : "False";
}

// "service+arg" -> {service, "+arg"} ("+" when there is no argument).
std::pair<std::string, std::string> split_service(const std::string& service_and_arg) {
    auto plus = service_and_arg.find('+');
    return {service_and_arg.substr(0, plus),
            plus == std::string::npos ? "+" : service_and_arg.substr(plus)};
}

// `d` turned into a deny (notify: whether upstream would send policy.Notify).
Decision denied(Decision d, std::string reason, bool notify) {
    d.outcome = Outcome::Deny;
    d.answer = "result=deny";
    d.reason = std::move(reason);
    d.notify = notify;
    return d;
}

// The answer lines of an allowed call (DAEMON.md §5.3) up to requested_target; an
// empty uuid is left out (dom0 has no target_uuid line).
std::vector<std::string> allow_lines(const AskState& st, const std::string& user,
                                     const std::string& target, const std::string& target_uuid) {
    std::vector<std::string> lines = {"user=" + user, "result=allow", "target=" + target};
    if (!target_uuid.empty()) lines.push_back("target_uuid=" + target_uuid);
    lines.push_back("autostart=" + bool_text(st.autostart));
    lines.push_back("requested_target=" + st.requested_target);
    return lines;
}

// The evaluation of one request.
class Evaluation {
  public:
    Evaluation(const Policy& policy, const SystemInfo& sys, const Request& req)
        : policy_(policy), sys_(sys), req_(req) {
        std::tie(service_, argument_) = split_service(req.service_and_arg);
        source_ = req.source;
        decision_.service = service_;
        decision_.argument = argument_;
        decision_.source = source_;
        decision_.target = req.intended_target.empty() ? "@default" : req.intended_target;
    }

    Decision run();
    std::vector<RuleTrace> trace();

  private:
    // Validates requested source and intended target; false = decided (deny).
    bool prepare();
    bool rule_matches(const Rule& rule, bool check_target) const;
    std::string mismatch(const Rule& rule) const;
    Decision deny(std::string reason, bool notify, const Rule* rule = nullptr);
    Decision act(const Rule& rule);
    Decision allow_rule(const Rule& rule);
    Decision ask_rule(const Rule& rule);
    // Errata 4/5: a target= redirect is checked like an intended target; a refusal, or
    // nullopt with `target` possibly turned into @default.
    std::optional<Decision> verify_redirect(const Rule& rule, std::string& target);
    // The §8 choice list built by walking the rules (after its removals).
    std::set<std::string> walk_choices() const;
    // What allow and ask rules carry to the answer.
    AskState call_state(const Rule& rule, bool autostart, bool notify) const;
    std::set<std::string> expand(const Token& token) const;

    const Policy& policy_;
    const SystemInfo& sys_;
    const Request& req_;
    std::string service_, argument_, source_;
    std::string target_; // normalised intended target
    std::optional<std::string> policy_source_;
    Decision decision_;

    friend Decision finish_allow(const AskState&, const SystemInfo&, std::string target,
                                 Decision base);
};

Decision Evaluation::deny(std::string reason, bool notify, const Rule* rule) {
    Decision d = denied(decision_, std::move(reason), notify && !req_.just_evaluate);
    if (rule) d.rule = rule->where;
    return d;
}

AskState Evaluation::call_state(const Rule& rule, bool autostart, bool notify) const {
    AskState st;
    st.source = source_;
    st.service = service_;
    st.argument = argument_;
    st.requested_target = target_;
    st.user = rule.user;
    st.autostart = autostart;
    st.notify = notify;
    st.policy_source = policy_source_;
    st.just_evaluate = req_.just_evaluate;
    return st;
}

bool Evaluation::prepare() {
    if (!req_.requested_source.empty()) {
        const Domain* d = find_vm(sys_, req_.requested_source);
        if (!d || d->type != "RemoteVM" || !d->relayvm || *d->relayvm != req_.source) {
            decision_ = deny(fmt::format("invalid requested source {} for source {}",
                                         req_.requested_source, req_.source),
                             true);
            return false;
        }
        source_ = req_.requested_source;
        policy_source_ = source_;
        decision_.source = source_;
    }
    std::string target = req_.intended_target.empty() ? "@default" : req_.intended_target;
    std::string error;
    auto token = parse_token(target, Column::IntendedTarget, &error);
    if (!token) {
        decision_ = deny("invalid intended target: " + error, false);
        return false;
    }
    // Errata 7: the source's record is needed (its default_dispvm, GUI VM...); a source
    // missing from the system information fails closed.
    if (!find_vm(sys_, source_)) {
        decision_ =
            deny(fmt::format("source '{}' is not in the system information", source_), false);
        return false;
    }
    if (token->kind == TokenKind::Literal && !is_dom0(target) && !find_vm(sys_, target)) {
        decision_.warnings.push_back(
            fmt::format("target '{}' does not exist, using @default instead", target));
        target = "@default";
    } else if (token->kind == TokenKind::DispVMTemplate) {
        const Domain* d = find_vm(sys_, token->value);
        if (!d || !d->template_for_dispvms) {
            decision_.target = target;
            decision_ = deny(fmt::format("not a template for dispvm: {}", token->value), true);
            return false;
        }
    }
    target_ = target;
    decision_.target = target;
    return true;
}

bool Evaluation::rule_matches(const Rule& rule, bool check_target) const {
    if (rule.service != "*" && rule.service != service_) return false;
    if (rule.argument != "*" && rule.argument != argument_) return false;
    if (!token_matches(rule.source, source_, sys_, source_)) return false;
    return !check_target || token_matches(rule.target, target_, sys_, source_);
}

std::string Evaluation::mismatch(const Rule& rule) const {
    if (rule.service != "*" && rule.service != service_)
        return fmt::format("service {} is not {}", service_, rule.service);
    if (rule.argument != "*" && rule.argument != argument_)
        return fmt::format("argument {} is not {}", argument_, rule.argument);
    if (!token_matches(rule.source, source_, sys_, source_))
        return fmt::format("source {} does not match {}", source_, rule.source.text);
    if (!token_matches(rule.target, target_, sys_, source_))
        return fmt::format("target {} does not match {}", target_, rule.target.text);
    return {};
}

Decision Evaluation::run() {
    if (!policy_.ok()) return deny("error loading policy: " + *policy_.error, false);
    if (!prepare()) return decision_;
    for (const Rule& rule : policy_.rules)
        if (rule_matches(rule, true)) return act(rule);
    return deny("no matching rule found", true);
}

std::vector<RuleTrace> Evaluation::trace() {
    std::vector<RuleTrace> out;
    if (!policy_.ok() || !prepare()) return out;
    for (const Rule& rule : policy_.rules) {
        std::string why = mismatch(rule);
        out.push_back({&rule, why});
        if (why.empty()) break;
    }
    return out;
}

Decision Evaluation::act(const Rule& rule) {
    switch (rule.action) {
    case ActionKind::Deny:
        return deny(fmt::format("denied by policy {}", rule.where.str()), rule.notify_or(true),
                    &rule);
    case ActionKind::Allow:
        return allow_rule(rule);
    case ActionKind::Ask:
        return ask_rule(rule);
    }
    return deny("internal error", false, &rule);
}

// The final allow answer for a resolved target: the target string after §7 steps 1-4, as
// written (errata 1). Records it needs must exist in every mode (errata 7); only the
// answer-time checks (loopback, RemoteVM relay data) are skipped by just_evaluate (errata 3).
Decision finish_allow(const AskState& st, const SystemInfo& sys, std::string target, Decision d) {
    d.target = target;
    auto refuse = [&](std::string reason, bool notify) {
        return denied(d, std::move(reason), notify && !st.just_evaluate);
    };
    const Domain* record = nullptr;
    if (is_dom0(target)) {
        target = "dom0";
        d.target = target;
    } else if (target.starts_with("@dispvm:")) {
        record = find_vm(sys, target.substr(8));
        if (!record)
            return refuse(fmt::format("disposable template {} does not exist", target.substr(8)),
                          false);
    } else {
        record = find_vm(sys, target);
        if (!record) return refuse(fmt::format("target {} does not exist", target), false);
    }
    if (st.just_evaluate) {
        d.outcome = Outcome::Allow;
        d.answer = "result=allow";
        d.reason += " (just evaluate)";
        d.notify = false;
        return d;
    }
    // Errata 2: a string comparison (a disposable or a uuid: spelling is not loopback).
    if (target == st.source) return refuse("loopback qrexec connection not supported", true);
    std::string user = st.user && !st.user->empty() ? *st.user : "DEFAULT";
    std::vector<std::string> lines;
    if (!record) {
        lines = allow_lines(st, user, "dom0", "");
    } else if (target.starts_with("@dispvm:")) {
        lines = allow_lines(st, user, target, "@dispvm:uuid:" + record->uuid);
    } else if (record->type == "RemoteVM") {
        const Domain* relay = record->relayvm ? find_vm(sys, *record->relayvm) : nullptr;
        if (!relay || !record->transport_rpc || record->transport_rpc->empty())
            return refuse(fmt::format("remote target {} has no relayvm/transport_rpc", target),
                          true);
        // A remote qube's user is chosen on the remote side. service= names the resolved
        // remote qube, not the intended target (errata 8, docs/DECISIONS.md).
        lines = allow_lines(st, "DEFAULT", relay->name, "uuid:" + relay->uuid);
        lines.push_back("service=" + *record->transport_rpc + "+" + record->name + "+" +
                        st.service + st.argument);
    } else {
        lines = allow_lines(st, user, target, "uuid:" + record->uuid);
    }
    if (st.policy_source && record) lines.push_back("policy_source=" + *st.policy_source);
    d.outcome = Outcome::Allow;
    d.answer.clear();
    for (size_t i = 0; i < lines.size(); ++i)
        d.answer += (i ? "\n" : "") + lines[i];
    d.notify = st.notify;
    return d;
}

std::optional<Decision> Evaluation::verify_redirect(const Rule& rule, std::string& target) {
    if (!rule.redirect) return std::nullopt;
    const Token& redirect = *rule.redirect;
    if (redirect.kind == TokenKind::Literal && !is_dom0(target) && !find_vm(sys_, target)) {
        // Errata 5: like an unknown intended target.
        decision_.warnings.push_back(
            fmt::format("target '{}' does not exist, using @default instead", target));
        target = "@default";
    } else if (redirect.kind == TokenKind::DispVMTemplate) {
        // Errata 4.
        const Domain* d = find_vm(sys_, redirect.value);
        if (!d || !d->template_for_dispvms)
            return deny(fmt::format("not a template for dispvm: {}", redirect.value), true, &rule);
    }
    return std::nullopt;
}

Decision Evaluation::allow_rule(const Rule& rule) {
    std::string target = rule.redirect ? rule.redirect->text : target_;
    bool notify = rule.notify_or(false);
    bool autostart = rule.autostart_or_default();
    if (auto refused = verify_redirect(rule, target)) return *refused;
    if (target == "@default")
        return deny(fmt::format("policy define 'allow' action at {} but no target is specified "
                                "by caller or policy",
                                rule.where.str()),
                    true, &rule);
    if (target == "@dispvm") {
        auto dflt = default_dispvm_of(sys_, source_);
        if (!dflt)
            return deny(fmt::format("policy define 'allow' action to @dispvm at {} but no "
                                    "DispVM base is set for this VM",
                                    rule.where.str()),
                        true, &rule);
        target = "@dispvm:" + *dflt;
    }
    if (is_dom0(target)) target = "dom0";
    if (!autostart && target != "dom0") {
        if (target.starts_with("@dispvm"))
            return deny(
                fmt::format("autostart=no at {} but target is a disposable", rule.where.str()),
                notify, &rule);
        const Domain* vm = find_vm(sys_, target);
        if (!vm) return deny(fmt::format("target {} does not exist", target), false, &rule);
        if (!vm->running())
            return deny(fmt::format("target {} is not running and autostart=no at {}", target,
                                    rule.where.str()),
                        notify, &rule);
    }
    AskState st = call_state(rule, autostart, notify);
    Decision base = decision_;
    base.rule = rule.where;
    base.reason = fmt::format("allowed by policy {}", rule.where.str());
    return finish_allow(st, sys_, target, base);
}

std::set<std::string> Evaluation::expand(const Token& token) const {
    std::set<std::string> out;
    const auto& doms = sys_.domains();
    auto add_all = [&](bool with_dom0) {
        for (const auto& [name, d] : doms) {
            if (!with_dom0 && is_dom0(name)) continue;
            out.insert(name);
            if (d.template_for_dispvms) out.insert("@dispvm:" + name);
        }
        out.insert("@dispvm");
    };
    switch (token.kind) {
    case TokenKind::Literal:
        if (const Domain* d = find_vm(sys_, token.text)) out.insert(d->name);
        break;
    case TokenKind::Any:
        add_all(true);
        break;
    case TokenKind::AnyVM:
        add_all(false);
        break;
    case TokenKind::Type:
        for (const auto& [name, d] : doms)
            if (d.type == token.value) out.insert(name);
        break;
    case TokenKind::Tag:
        for (const auto& [name, d] : doms)
            if (d.has_tag(token.value)) out.insert(name);
        break;
    case TokenKind::DispVMTemplate:
        if (const Domain* d = find_vm(sys_, token.value); d && d->template_for_dispvms)
            out.insert("@dispvm:" + d->name);
        break;
    case TokenKind::DispVMTag:
        for (const auto& [name, d] : doms)
            if (d.template_for_dispvms && d.has_tag(token.value)) out.insert("@dispvm:" + name);
        break;
    case TokenKind::AdminVM:
        out.insert("@adminvm");
        break;
    case TokenKind::DispVM:
        out.insert("@dispvm");
        break;
    case TokenKind::Default:
        break;
    }
    return out;
}

// How an ask offers a target found by walking the rules: @dispvm as the source's default
// disposable template ("" when it has none), dom0 by name.
std::string choice_name(const std::string& target, const std::optional<std::string>& dflt) {
    if (target == "@dispvm") return dflt ? "@dispvm:" + *dflt : "";
    if (is_dom0(target)) return "dom0";
    return target;
}

// Why a choice has no record in the system information (errata 7), "" when it has one.
std::string missing_record(const SystemInfo& sys, const std::string& choice) {
    if (choice == "dom0") return {};
    if (choice.starts_with("@dispvm:")) {
        if (find_vm(sys, choice.substr(8))) return {};
        return fmt::format("disposable template {} does not exist", choice.substr(8));
    }
    if (find_vm(sys, choice)) return {};
    return fmt::format("target {} does not exist", choice);
}

std::set<std::string> Evaluation::walk_choices() const {
    std::set<std::string> raw;
    // Reverse walk: earlier rules are applied last and so win.
    for (auto it = policy_.rules.rbegin(); it != policy_.rules.rend(); ++it) {
        if (!rule_matches(*it, false)) continue;
        auto targets = expand(it->redirect ? *it->redirect : it->target);
        if (it->action == ActionKind::Deny)
            for (const auto& t : targets)
                raw.erase(t);
        else
            raw.insert(targets.begin(), targets.end());
    }
    auto dflt = default_dispvm_of(sys_, source_);
    std::set<std::string> choices;
    for (const auto& t : raw) {
        std::string name = choice_name(t, dflt);
        if (name.empty()) continue;
        if (name == source_) continue;
        if (const Domain* d = find_vm(sys_, name); d && d->internal) continue;
        choices.insert(name);
    }
    return choices;
}

Decision Evaluation::ask_rule(const Rule& rule) {
    bool notify = rule.notify_or(false);
    bool autostart = rule.autostart_or_default();
    std::set<std::string> choices;
    if (rule.redirect) {
        // Errata 9: exactly that target, nothing removed (errata 4: a disposable template is
        // verified).
        if (rule.redirect->kind == TokenKind::DispVMTemplate) {
            const Domain* d = find_vm(sys_, rule.redirect->value);
            if (!d || !d->template_for_dispvms)
                return deny(fmt::format("not a template for dispvm: {}", rule.redirect->value),
                            true, &rule);
        }
        choices.insert(is_dom0(rule.redirect->text) ? "dom0" : rule.redirect->text);
    } else {
        choices = walk_choices();
    }
    for (const auto& choice : choices)
        if (std::string why = missing_record(sys_, choice); !why.empty())
            return deny(why, false, &rule);
    auto dflt = default_dispvm_of(sys_, source_);
    std::optional<std::string> default_target;
    if (rule.default_target) {
        std::string dt = rule.default_target->text == "@dispvm"
                             ? (dflt ? "@dispvm:" + *dflt : "")
                             : choice_name(rule.default_target->text, dflt);
        if (!dt.empty()) {
            if (std::string why = missing_record(sys_, dt); !why.empty())
                return deny("default_target: " + why, false, &rule);
            default_target = dt;
        }
    }
    if (!autostart) {
        std::erase_if(choices, [&](const std::string& name) {
            if (name == "dom0") return false;
            if (name.starts_with("@dispvm")) return true;
            const Domain* d = find_vm(sys_, name);
            return !d || !d->running();
        });
    }
    if (choices.empty())
        return deny(fmt::format("policy define 'ask' action at {} but no target is available "
                                "to choose from",
                                rule.where.str()),
                    true, &rule);
    AskState st = call_state(rule, autostart, notify);
    st.targets.assign(choices.begin(), choices.end());
    if (default_target && choices.count(*default_target)) st.default_target = *default_target;
    Decision pending = decision_;
    pending.rule = rule.where;
    pending.outcome = Outcome::Ask;
    pending.reason = fmt::format("ask at {}", rule.where.str());
    pending.ask = st;
    if (req_.assume_yes_for_ask) return answer_ask(pending, sys_, target_);
    if (req_.just_evaluate)
        return deny("denied for non-interactive ask (just evaluate)", false, &rule);
    return pending;
}

} // namespace

Decision evaluate(const Policy& policy, const SystemInfo& system, const Request& request) {
    Evaluation evaluation(policy, system, request);
    return evaluation.run();
}

Decision decide(const Policy& policy, const SystemInfo& system, const Request& request,
                const Prompt& prompt) {
    Decision decision = evaluate(policy, system, request);
    if (decision.outcome != Outcome::Ask) return decision;
    return answer_ask(decision, system, prompt ? prompt(*decision.ask) : std::nullopt);
}

Decision deny_without_system_info(const Request& request, const std::string& why) {
    Decision d;
    std::tie(d.service, d.argument) = split_service(request.service_and_arg);
    d.source = request.source;
    d.target = request.intended_target;
    return denied(d, "cannot get system info: " + why, false);
}

Decision answer_ask(const Decision& pending, const SystemInfo& system,
                    const std::optional<std::string>& chosen) {
    Decision d = pending;
    d.ask.reset();
    const AskState& st = *pending.ask;
    auto refuse = [&](std::string reason) {
        return denied(d, std::move(reason), st.notify && !st.just_evaluate);
    };
    if (!chosen) return refuse("denied by the user");
    if (std::find(st.targets.begin(), st.targets.end(), *chosen) == st.targets.end())
        return refuse(fmt::format("target {} is not one of the allowed choices", *chosen));
    d.reason = fmt::format("allowed by the user to {} ({})", *chosen,
                           pending.rule ? pending.rule->str() : "?");
    return finish_allow(st, system, *chosen, d);
}

std::vector<RuleTrace> trace_rules(const Policy& policy, const SystemInfo& system,
                                   const Request& request) {
    Evaluation evaluation(policy, system, request);
    return evaluation.trace();
}

} // namespace qrexec::policy
