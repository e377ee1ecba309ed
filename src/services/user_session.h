#pragma once

// Who the agent runs a call as: the agent's own user, or (root agent) another
// user inside a PAM session. Kept apart from exec.h because it needs libpam and
// the name service (NSS): programs that never switch users (qrexec-client-vm)
// link without both, which lets them be linked statically (docs/DECISIONS.md).

#include "services/command.h"
#include "services/prepare.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace qrexec::services {

int run_as_user_with_pam(const std::string& user, pid_t agent_pid,
                         const std::function<void()>& body);

bool nonroot_user_allowed(const std::string& user);

class OwnUserName {
  public:
    explicit OwnUserName(std::chrono::steady_clock::duration lifetime = std::chrono::seconds(5))
        : lifetime_(lifetime) {}
    const std::string& get();

  private:
    std::chrono::steady_clock::duration lifetime_;
    std::chrono::steady_clock::time_point fetched_{};
    bool valid_ = false;
    std::string name_;
};

std::optional<std::string> lookup_own_user_name();

[[noreturn]] void exec_call_as_user(const ParsedCommand& command, const PreparedCall& call,
                                    const std::string& user, pid_t agent_pid);

} // namespace qrexec::services
