#include "daemon/inprocess_policy.h"

#include "io/log.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

namespace qrexec::daemon {

namespace {

// Upper bound on qubesd's internal.GetSystemInfo reply (a JSON of every VM).
constexpr size_t kMaxSystemInfoReply = 64 * 1024 * 1024;

const char* outcome_name(policy::Outcome outcome) {
    switch (outcome) {
    case policy::Outcome::Allow:
        return "allow";
    case policy::Outcome::Deny:
        return "deny";
    case policy::Outcome::Ask:
        return "ask";
    }
    return "?";
}

} // namespace

InProcessConfig InProcessConfig::from_env() {
    InProcessConfig config;
    config.paths = policy::PolicyPaths::from_env();
    if (const char* file = std::getenv("QREXEC_SYSTEM_INFO"); file && *file)
        config.system_info_file = file;
    const char* qubesd = std::getenv("QREXEC_QUBESD_INTERNAL_SOCKET");
    config.qubesd_socket = qubesd && *qubesd ? qubesd : policy::kQubesdInternalSocket;
    config.ask_command = policy::ask_command_from_env();
    return config;
}

policy::Request engine_request(const PolicyQuery& query) {
    policy::Request request;
    request.source = query.source;
    request.intended_target = query.intended_target;
    request.service_and_arg = query.service_and_arg;
    request.requested_source = query.requested_source.value_or("");
    return request;
}

std::string decision_location(const policy::Decision& decision, const policy::Policy& policy) {
    if (decision.rule) return decision.rule->str();
    if (!policy.ok() && policy.error_location) return policy.error_location->str();
    return "no rule";
}

// ---- InProcessPolicy ----------------------------------------------------------

namespace {
policy::CacheConfig cache_config(const InProcessConfig& config) {
    policy::CacheConfig out;
    out.paths = config.paths;
    out.system_info_file = config.system_info_file;
    out.watch = true;
    return out;
}
} // namespace

InProcessPolicy::InProcessPolicy(io::EventLoop& loop, InProcessConfig config)
    : config_(std::move(config)), cache_(cache_config(config_)) {
    if (cache_.watch_fd() >= 0)
        watch_ = Watch(loop, cache_.watch_fd(), EPOLLIN,
                       [this](uint32_t) { cache_.on_watch_readable(); });
}

InProcessPolicy::~InProcessPolicy() {
    watch_.reset();
}

// ---- PolicyEvaluation ----------------------------------------------------------

PolicyEvaluation::PolicyEvaluation(io::EventLoop& loop, const InProcessPolicy& cache,
                                   const PolicyQuery& query, std::string what, Done done)
    : loop_(loop), cache_(cache), request_(engine_request(query)), what_(std::move(what)),
      done_(std::move(done)), policy_(cache.policy()) {}

PolicyEvaluation::~PolicyEvaluation() = default;

void PolicyEvaluation::run() {
    if (!cache_.system_info_from_qubesd()) {
        std::string error;
        system_ = cache_.system_info(&error);
        if (!system_) {
            finish(policy::deny_without_system_info(request_, error), "");
            return;
        }
        evaluate();
        return;
    }
    qubesd_call_ = std::make_unique<qubesd::Call>(
        loop_, cache_.config().qubesd_socket, "internal.GetSystemInfo", "dom0", "",
        [this](qubesd::Reply reply) { on_system_info(std::move(reply)); }, kMaxSystemInfoReply);
}

void PolicyEvaluation::on_system_info(qubesd::Reply reply) {
    std::string error;
    if (!reply.ok) {
        error = std::move(reply.error);
    } else if (auto info = policy::parse_system_info(reply.value, &error)) {
        system_ = std::make_shared<const policy::SystemInfo>(std::move(*info));
    }
    if (!system_) {
        finish(policy::deny_without_system_info(request_, error), "");
        return;
    }
    evaluate();
}

void PolicyEvaluation::evaluate() {
    policy::Decision decision = policy::evaluate(*policy_, *system_, request_);
    if (decision.outcome != policy::Outcome::Ask) {
        finish(decision, "");
        return;
    }
    const std::string& command = cache_.config().ask_command;
    QLOG("{}: policy ask at {}; {}", what_, decision_location(decision, *policy_),
         command.empty() ? "no ask command configured, denying" : "running the ask command");
    if (command.empty()) {
        finish(policy::answer_ask(decision, *system_, std::nullopt), "ask: ");
        return;
    }
    pending_ask_ = std::move(decision);
    try {
        ask_ = std::make_unique<policy::AskProcess>(
            loop_, command, *pending_ask_->ask, *system_,
            [this](std::optional<std::string> choice) { on_ask_answer(std::move(choice)); },
            cache_.config().ask_timeout);
    } catch (const std::exception& e) {
        QLOG("{}: cannot run the ask command: {}", what_, e.what());
        finish(policy::answer_ask(*pending_ask_, *system_, std::nullopt), "ask: ");
    }
}

void PolicyEvaluation::on_ask_answer(std::optional<std::string> choice) {
    // Called from the AskProcess, which therefore stays alive until we are destroyed.
    finish(policy::answer_ask(*pending_ask_, *system_, choice), "ask: ");
}

void PolicyEvaluation::finish(const policy::Decision& decision, const char* how) {
    if (finished_) return;
    finished_ = true;
    for (const auto& warning : decision.warnings)
        QLOG("{}: policy warning: {}", what_, warning);
    std::string where = decision_location(decision, *policy_);
    // "allowed by policy FILE:LINE" says nothing more than the location.
    bool redundant = decision.reason.empty() || (decision.rule && decision.reason.ends_with(where));
    QLOG("{}: {}policy {} at {}{}", what_, how, outcome_name(decision.outcome), where,
         redundant ? std::string() : " (" + decision.reason + ")");
    // done_ may end the request (never destroys us synchronously).
    done_(decision.answer);
}

} // namespace qrexec::daemon
