// Pure parts of a VM-initiated call (DAEMON.md §5.2-§5.5): the policy request
// text, strict parsing of the policy reply, and turning an "allow" into what
// to do (dom0 command, or command + destination for a VM). No I/O.
#pragma once


#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qrexec::daemon {

struct PolicyQuery {
    std::string source;                          // DOMNAME of the calling VM
    std::optional<std::string> requested_source; // TRIGGER4 only (may be empty)
    std::string intended_target;
    std::string service_and_arg;
};

// The exact request sent on the policy socket (§5.2).
std::string format_policy_request(const PolicyQuery& query);

// argv for the fallback policy program (argv[0] is the literal name).
std::vector<std::string> policy_program_argv(const PolicyQuery& query);

struct PolicyDecision {
    bool allow = false;
    std::string user;
    std::string target;
    std::optional<std::string> target_uuid;
    bool autostart = false;
    std::string requested_target;
    std::optional<std::string> service;       // replacement service+arg
    std::optional<std::string> policy_source; // replacement source name
};

struct PolicyParse {
    std::optional<PolicyDecision> decision; // nullopt = MALFORMED
    std::string error;                      // why it is malformed
    std::vector<std::string> ignored_lines; // unknown keys (to be logged)
};

// Strict §5.3 parser (max length is enforced by the reader, not here).
PolicyParse parse_policy_reply(std::string_view reply);

inline constexpr size_t kMaxPolicyReply = 4095;

// What an allowed call does (§5.4).
struct CallPlan {
    bool to_dom0 = false;
    // dom0: the qrexec-client COMMAND ("QUBESRPC svc+arg src keyword|name rt").
    // VM:   the command line "<user>:QUBESRPC svc+arg src".
    std::string command;
    std::string source; // policy_source or DOMNAME
    // VM only: "name", "uuid:<uuid>", "@dispvm:<template>" or "@dispvm:uuid:<uuid>".
    std::string destination;
    bool autostart = false;
};

bool is_dom0_name(std::string_view name);
CallPlan plan_call(const PolicyDecision& decision, std::string_view requested_service,
                   std::string_view domname);

// Disposable destinations: "@dispvm:<rest>" -> rest (the template), else nullopt.
std::optional<std::string> dispvm_template(std::string_view destination);

// A destination usable as a socket name "qrexec.<destination>" (no '/', not
// empty, not "." / "..", bounded length).
bool is_safe_destination(std::string_view destination);

} // namespace qrexec::daemon
