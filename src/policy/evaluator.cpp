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
    if (token->kind == TokenKind::Literal && !find_vm(sys_, target)) {
        decision_.reason = fmt::format("target {} does not exist, using @default", target);
        target = "@default";
    } else if (token->kind == TokenKind::DispVMTemplate) {
        const Domain* d = find_vm(sys_, token->value);
        if (!d || !d->template_for_dispvms) {
            decision_.target = target;
            decision_ = deny(fmt::format("{} is not a disposable template", token->value), true);
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

// The final allow answer for a resolved target (§7 "at answer time").
Decision finish_allow(const AskState& st, const SystemInfo& sys, std::string target, Decision d) {
    d.target = target;
    auto refuse = [&](std::string reason) {
        return denied(d, std::move(reason), !st.just_evaluate);
    };
    if (st.just_evaluate) {
        d.outcome = Outcome::Allow;
        d.answer = "result=allow";
        d.reason = "allowed (just evaluate)";
        d.notify = false;
        return d;
    }
    std::string user = st.user && !st.user->empty() ? *st.user : "DEFAULT";
    std::vector<std::string> lines;
    if (is_dom0(target)) {
        lines = allow_lines(st, user, "dom0", "");
    } else if (target.starts_with("@dispvm:")) {
        const Domain* tmpl = find_vm(sys, target.substr(8));
        if (!tmpl) return refuse(fmt::format("disposable template {} does not exist", target));
        if (tmpl->name == st.source) return refuse("loopback qrexec connection not supported");
        lines = allow_lines(st, user, "@dispvm:" + tmpl->name, "@dispvm:uuid:" + tmpl->uuid);
    } else {
        const Domain* vm = find_vm(sys, target);
        if (!vm) return refuse(fmt::format("target {} does not exist", target));
        if (vm->name == st.source || same_vm(sys, target, st.source))
            return refuse("loopback qrexec connection not supported");
        if (vm->type == "RemoteVM") {
            const Domain* relay = vm->relayvm ? find_vm(sys, *vm->relayvm) : nullptr;
            if (!relay || !vm->transport_rpc || vm->transport_rpc->empty())
                return refuse(
                    fmt::format("remote target {} has no relayvm/transport_rpc", vm->name));
            // A remote qube's user is chosen on the remote side.
            lines = allow_lines(st, "DEFAULT", relay->name, "uuid:" + relay->uuid);
            lines.push_back("service=" + *vm->transport_rpc + "+" + vm->name + "+" + st.service +
                            st.argument);
        } else {
            lines = allow_lines(st, user, vm->name, "uuid:" + vm->uuid);
        }
        d.target = vm->name;
    }
    if (st.policy_source && !is_dom0(target)) lines.push_back("policy_source=" + *st.policy_source);
    d.outcome = Outcome::Allow;
    d.answer.clear();
    for (size_t i = 0; i < lines.size(); ++i)
        d.answer += (i ? "\n" : "") + lines[i];
    d.notify = st.notify;
    return d;
}

Decision Evaluation::allow_rule(const Rule& rule) {
    std::string target = rule.redirect ? rule.redirect->text : target_;
    bool notify = rule.notify_or(false);
    bool autostart = rule.autostart_or_default();
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
        if (!vm || !vm->running())
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

// How an ask offers a target: @dispvm as the source's default disposable template ("" when
// it has none), dom0 by name.
std::string choice_name(const std::string& target, const std::optional<std::string>& dflt) {
    if (target == "@dispvm") return dflt ? "@dispvm:" + *dflt : "";
    if (is_dom0(target)) return "dom0";
    return target;
}

Decision Evaluation::ask_rule(const Rule& rule) {
    bool notify = rule.notify_or(false);
    bool autostart = rule.autostart_or_default();
    std::set<std::string> raw;
    if (rule.redirect) {
        raw.insert(is_dom0(rule.redirect->text) ? "dom0" : rule.redirect->text);
    } else {
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
    }
    auto dflt = default_dispvm_of(sys_, source_);
    std::set<std::string> targets;
    for (const auto& t : raw) {
        std::string name = choice_name(t, dflt);
        if (name.empty()) continue;
        if (same_vm(sys_, name, source_)) continue;
        if (const Domain* d = find_vm(sys_, name); d && d->internal) continue;
        if (!autostart && name != "dom0") {
            const Domain* d = find_vm(sys_, name);
            if (!d || !d->running()) continue;
        }
        targets.insert(name);
    }
    if (targets.empty())
        return deny(fmt::format("policy define 'ask' action at {} but no target is available "
                                "to choose from",
                                rule.where.str()),
                    true, &rule);
    AskState st = call_state(rule, autostart, notify);
    st.targets.assign(targets.begin(), targets.end());
    if (rule.default_target) {
        std::string dt = choice_name(rule.default_target->text, dflt);
        if (targets.count(dt)) st.default_target = dt;
    }
    Decision pending = decision_;
    pending.rule = rule.where;
    pending.outcome = Outcome::Ask;
    pending.reason = fmt::format("ask at {}", rule.where.str());
    pending.ask = st;
    if (req_.assume_yes_for_ask) return answer_ask(pending, sys_, target_);
    if (req_.just_evaluate) {
        Decision d = deny("denied for non-interactive ask (just evaluate)", false, &rule);
        return d;
    }
    return pending;
}

} // namespace

Decision evaluate(const Policy& policy, const SystemInfo& system, const Request& request) {
    Evaluation evaluation(policy, system, request);
    return evaluation.run();
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

std::shared_ptr<const Policy> load_policy_shared(const Loader& loader, const PolicyPaths& paths) {
    return std::make_shared<const Policy>(load_policy(loader, paths));
}

} // namespace qrexec::policy
