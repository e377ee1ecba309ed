// qrexec-policy-daemon (POLICY.md §10): answers policy requests on policy.sock and
// the policy.EvalSimple / policy.EvalGUI socket services from one io::EventLoop,
// reloading the policy on inotify events. Requests in flight keep the policy
// snapshot they were evaluated with.
#pragma once

#include "io/event_loop.h"
#include "io/fd.h"
#include "policy/ask.h"
#include "policy/engine.h"
#include "policy/request.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qrexec::policy {

struct DaemonConfig {
    PolicyPaths paths;
    std::string socket_path = "/var/run/qubes/policy.sock";
    std::string eval_socket_path = "/etc/qubes-rpc/policy.EvalSimple"; // "" = disabled
    std::string gui_socket_path = "/etc/qubes-rpc/policy.EvalGUI";     // "" = disabled
    std::string system_info_file;                                      // "" = qubesd
    std::string ask_command;                                           // "" = deny asks
    // One log line per decision (upstream logs each to syslog); benchmarks turn it off.
    bool log_decisions = true;
    // A client that has not finished its request after this long is dropped.
    std::chrono::milliseconds client_timeout{60000};
};

class PolicyDaemon {
  public:
    PolicyDaemon(io::EventLoop& loop, DaemonConfig config);
    ~PolicyDaemon();
    PolicyDaemon(const PolicyDaemon&) = delete;
    PolicyDaemon& operator=(const PolicyDaemon&) = delete;

    // Creates the sockets and the inotify watch and loads the policy. Throws
    // std::runtime_error when the main socket cannot be created.
    void start();
    void reload();
    std::shared_ptr<const Policy> policy() const { return policy_; }

  private:
    enum class Kind { PolicySocket, EvalSimple, EvalGUI };
    struct Client;

    io::Fd listen_on(const std::string& path);
    void accept_clients(int listen_fd, Kind kind);
    void on_client_readable(int fd, uint32_t events);
    void on_client_writable(int fd);
    void handle_request(Client& client);
    void handle_eval(Client& client);
    void reply(int fd, std::string text);
    void drop(int fd);
    void on_inotify();
    void update_watches();

    io::EventLoop& loop_;
    DaemonConfig config_;
    FsLoader loader_;
    SystemInfoSource system_source_;
    std::shared_ptr<const Policy> policy_;
    io::Fd policy_sock_, eval_sock_, gui_sock_, inotify_;
    std::map<std::string, int> watches_; // path -> wd
    std::map<int, std::unique_ptr<Client>> clients_;
};

} // namespace qrexec::policy
