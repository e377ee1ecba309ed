#include "policy/tools.h"

#include <fmt/format.h>

#include <map>
#include <set>

namespace qrexec::policy {

namespace {

// Does an earlier rule's token match at least everything `later` matches?
bool token_covers(const Token& earlier, const Token& later) {
    if (earlier.kind == TokenKind::Any) return true;
    if (earlier.kind == TokenKind::AnyVM)
        return later.kind == TokenKind::AnyVM || later.kind == TokenKind::Type ||
               later.kind == TokenKind::DispVM || later.kind == TokenKind::DispVMTemplate ||
               later.kind == TokenKind::DispVMTag || later.kind == TokenKind::Default ||
               (later.kind == TokenKind::Literal && later.text != "dom0" &&
                !later.text.starts_with("uuid:"));
    return earlier == later;
}

bool rule_covers(const Rule& earlier, const Rule& later) {
    if (earlier.service != "*" && earlier.service != later.service) return false;
    if (earlier.argument != "*" && earlier.argument != later.argument) return false;
    return token_covers(earlier.source, later.source) && token_covers(earlier.target, later.target);
}

std::string quote_dot(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string indent_answer(const std::string& answer) {
    std::string out;
    size_t pos = 0;
    while (pos <= answer.size()) {
        auto nl = answer.find('\n', pos);
        out += "    " + answer.substr(pos, nl == std::string::npos ? nl : nl - pos) + "\n";
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    return out;
}

} // namespace

std::vector<std::string> shadowed_rule_warnings(const std::vector<Rule>& rules) {
    std::vector<std::string> out;
    for (size_t i = 0; i < rules.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (!rule_covers(rules[j], rules[i])) continue;
            out.push_back(fmt::format("{}: warning: rule can never match: {} matches "
                                      "everything it does",
                                      rules[i].where.str(), rules[j].where.str()));
            break;
        }
    }
    return out;
}

std::string explain_text(const Policy& policy, const SystemInfo& system, const Request& request) {
    std::string out =
        fmt::format("request: {} -> {} {}\n", request.source,
                    request.intended_target.empty() ? "@default" : request.intended_target,
                    request.service_and_arg);
    Decision d = evaluate(policy, system, request);
    if (!policy.ok()) {
        out += "decision: deny\n";
        out += "reason: the policy does not load, so every request is denied:\n  " + *policy.error +
               "\n";
        return out;
    }
    auto trace = trace_rules(policy, system, request);
    if (!trace.empty()) {
        out += "rules considered:\n";
        for (const auto& t : trace) {
            out += fmt::format("  {}: {}\n", t.rule->where.str(), format_rule(*t.rule));
            out += t.mismatch.empty() ? "    -> matches\n"
                                      : fmt::format("    no match: {}\n", t.mismatch);
        }
    }
    switch (d.outcome) {
    case Outcome::Allow:
        out += "decision: allow\n";
        break;
    case Outcome::Deny:
        out += "decision: deny\n";
        break;
    case Outcome::Ask:
        out += "decision: ask\n";
        break;
    }
    if (d.rule)
        out += fmt::format("decided by: {}\n", d.rule->str());
    else
        out += "decided by: (no rule)\n";
    out += "reason: " + d.reason + "\n";
    if (d.outcome == Outcome::Ask) {
        std::string targets;
        for (const auto& t : d.ask->targets)
            targets += (targets.empty() ? "" : ", ") + t;
        out += "choices: " + targets + "\n";
        out += "default target: " +
               (d.ask->default_target.empty() ? std::string("(none)") : d.ask->default_target) +
               "\n";
    } else {
        out += "answer:\n" + indent_answer(d.answer);
    }
    return out;
}

std::string policy_graph_dot(const Policy& policy, const SystemInfo& system,
                             const GraphOptions& options) {
    std::set<std::string> services(options.services.begin(), options.services.end());
    if (services.empty())
        for (const auto& r : policy.rules)
            if (r.service != "*")
                // "*" and "+" both evaluate like a call without argument.
                services.insert(r.service +
                                (r.argument == "*" || r.argument == "+" ? "" : r.argument));
    std::vector<std::string> sources = options.sources;
    if (sources.empty())
        for (const auto& [name, d] : system.domains())
            sources.push_back(name);
    std::vector<std::string> targets = options.targets;
    if (targets.empty()) {
        for (const auto& [name, d] : system.domains())
            targets.push_back(name);
        targets.push_back("");
        targets.push_back("@dispvm");
    }
    // (source, target) -> services, split by allow / ask
    std::map<std::pair<std::string, std::string>, std::set<std::string>> allow, ask;
    std::set<std::string> nodes;
    for (const auto& service : services) {
        for (const auto& source : sources) {
            for (const auto& target : targets) {
                Request r;
                r.source = source;
                r.intended_target = target;
                r.service_and_arg = service;
                Decision d = evaluate(policy, system, r);
                if (d.outcome == Outcome::Allow) {
                    allow[{source, d.target}].insert(service);
                } else if (d.outcome == Outcome::Ask && options.include_ask) {
                    std::string t = target.empty() ? d.ask->default_target : target;
                    if (t == "@dispvm" || t.empty()) continue;
                    for (const auto& choice : d.ask->targets)
                        if (choice == t) ask[{source, t}].insert(service);
                }
            }
        }
    }
    std::string out = "digraph policy {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n";
    auto edges = [&](const auto& map, const char* style) {
        for (const auto& [pair, svcs] : map) {
            std::string label;
            for (const auto& s : svcs)
                label += (label.empty() ? "" : "\\n") + s;
            // Service names are [A-Za-z0-9._+-] only; "\\n" is DOT's line break.
            out += fmt::format("  {} -> {} [label=\"{}\"{}];\n", quote_dot(pair.first),
                               quote_dot(pair.second), label, style);
        }
    };
    for (const auto& m : {&allow, &ask})
        for (const auto& [pair, svcs] : *m) {
            nodes.insert(pair.first);
            nodes.insert(pair.second);
        }
    for (const auto& n : nodes)
        out += "  " + quote_dot(n) + ";\n";
    edges(allow, "");
    edges(ask, ", style=dashed");
    out += "}\n";
    return out;
}

} // namespace qrexec::policy
