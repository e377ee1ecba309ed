// qrexec-policy-daemon (POLICY.md §10), the policy SERVER: answers policy requests
// on policy.sock and the policy.EvalSimple / policy.EvalGUI socket services from one
// io::EventLoop. The policy is the policy room's PolicyCache (reloaded when writers
// are done); each request keeps the policy and system snapshots it was evaluated with.
#pragma once

#include "io/event_loop.h"
#include "io/fd.h"
#include "io/watch.h"
#include "policy/cache.h"
#include "policy/engine.h"
#include "policy_server/ask.h"
#include "policy_server/request.h"

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
    std::string qubesd_socket = qubesd_internal_socket_from_env();
    std::string ask_command; // "" = deny asks
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
    std::shared_ptr<const Policy> policy() const { return cache_ ? cache_->policy() : nullptr; }
    const PolicyCache* cache() const { return cache_.get(); }

  private:
    enum class Kind { PolicySocket, EvalSimple, EvalGUI };
    struct Client;

    struct Listener {
        io::Fd sock;
        io::Watch watch; // destroyed first, while sock is still open
    };

    io::Fd listen_on(const std::string& path);
    void listen_and_accept(Listener& listener, const std::string& path, Kind kind);
    void accept_clients(int listen_fd, Kind kind);
    void on_client_readable(int fd, uint32_t events);
    void on_client_writable(int fd);
    void handle_request(Client& client);
    void handle_eval(Client& client);
    void reply(int fd, std::string text);
    void drop(int fd);

    io::EventLoop& loop_;
    DaemonConfig config_;
    std::unique_ptr<PolicyCache> cache_; // created by start()
    io::Watch cache_watch_;
    Listener policy_sock_, eval_sock_, gui_sock_;
    std::map<int, std::unique_ptr<Client>> clients_;
};

} // namespace qrexec::policy
