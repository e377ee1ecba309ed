// Pure parsers for what clients send to the policy daemon (POLICY.md §10):
// the policy.sock request (key=value lines ended by an empty line) and the
// policy.EvalSimple / policy.EvalGUI socket-service input.
#pragma once

#include "policy/engine.h"

#include <optional>
#include <string>
#include <string_view>

namespace qrexec::policy {

// Upper bound on a whole policy.sock request (upstream's line limit is 64 KiB).
inline constexpr size_t kMaxSocketRequest = 65536;

class SocketRequestParser {
  public:
    enum class State { NeedMore, Complete, Invalid };

    // Feeds more bytes; once Complete or Invalid, further input is ignored.
    State feed(std::string_view data);
    // The peer closed its side: a last unterminated line is processed, and EOF ends
    // the request like an empty line.
    State finish();
    State state() const { return state_; }
    const Request& request() const { return request_; }
    const std::string& error() const { return error_; }

  private:
    State line(std::string_view text);
    State complete();
    State invalid(std::string why);

    State state_ = State::NeedMore;
    std::string buffer_;
    size_t total_ = 0;
    Request request_;
    unsigned seen_ = 0; // bit per key
    std::string error_;
};

// Convenience for tests/fuzzing: the whole input at once, then EOF.
std::optional<Request> parse_socket_request(std::string_view data, std::string* error = nullptr);

// policy.EvalSimple / policy.EvalGUI input: "<descriptor> <caller>[ ...]\0<source>\0<target>".
struct EvalRequest {
    std::string service_queried; // the service+arg whose policy is asked about
    std::string caller;          // the VM that called policy.Eval*
    std::string source;
    std::string target;
};
inline constexpr size_t kMaxEvalHeader = 65536;
inline constexpr size_t kMaxEvalBody = 96;

// service_name: "policy.EvalSimple" or "policy.EvalGUI".
std::optional<EvalRequest> parse_eval_request(std::string_view data, std::string_view service_name,
                                              std::string* error = nullptr);

} // namespace qrexec::policy
