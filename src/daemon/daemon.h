// qrexec-daemon runtime (DAEMON.md §3-§6): one event loop serving the control
// vchan to the VM's agent, the client socket (qrexec-client, other daemons),
// and the VM-initiated requests (daemon/request.h). No fork per request.
#pragma once

#include "daemon/async.h"
#include "daemon/frame_buffer.h"
#include "daemon/inprocess_policy.h"
#include "daemon/port_allocator.h"
#include "daemon/request.h"
#include "io/admission.h"
#include "io/event_loop.h"
#include "io/log_field.h"
#include "qubesd/client.h"

#include "transport/vchan.h"
#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::daemon {

// Thrown to leave the daemon with an exit status (sockets are removed by the
// destructors on the way out, like upstream's atexit handler).
struct DaemonExit {
    int code;
};

// Receives the agent's HELLO and echoes its version back (P§4.1). Returns the
// negotiated version, or nullopt (logged) on any failure.
std::optional<uint32_t> agent_handshake(transport::Channel& channel, int timeout_ms);

// The client socket qrexec.<domid> and its two symlinks (§2 step 6), relative
// to the current directory (the socket dir).
class ClientSocket {
  public:
    ClientSocket(int domid, std::string name, std::string uuid);
    ClientSocket(const ClientSocket&) = delete;
    ClientSocket& operator=(const ClientSocket&) = delete;
    ~ClientSocket() { remove(); }
    bool create(); // false: fatal (logged)
    void remove();
    int fd() const { return listener_.get(); }

  private:
    std::string socket_name_;
    std::vector<std::string> links_;
    io::Fd listener_;
    bool created_ = false;
};

struct DaemonConfig {
    RequestSettings settings;
    std::string uuid;
    std::string default_user = "user";
    // --policy-in-process: evaluate with a cached policy instead of the
    // policy socket / program.
    std::optional<InProcessConfig> in_process;
};

class Daemon final : public RequestHost {
  public:
    static constexpr size_t kMaxClients = 256;
    static constexpr size_t kMaxPending = 256;
    // Data ports one peer VM may hold at a time on this daemon: a VM that never
    // serves its data connections cannot starve the other peers (dom0 exempt).
    static constexpr size_t kMaxPortsPerPeer = 96;
    // Log lines about one source's rejected requests: a burst, then 1/s.
    static constexpr unsigned kLogBurst = 20;
    static constexpr std::chrono::milliseconds kLogInterval{1000};

    Daemon(io::EventLoop& loop, DaemonConfig config, std::unique_ptr<transport::Backend> backend);
    ~Daemon() override;

    // The control channel, handshake already done.
    void attach_agent(std::unique_ptr<transport::Channel> channel, uint32_t version);
    bool create_socket() { return socket_.create() && watch_listener(); }
    // Serves until SIGTERM (returns 0); fatal errors throw DaemonExit.
    int run(int signal_fd);

    // RequestHost
    io::EventLoop& loop() override { return loop_; }
    Reaper& reaper() override { return reaper_; }
    void request_connect(Request& request, uint32_t domain, uint32_t port) override;
    void request_refuse(Request& request) override;
    void keep_disposable(io::Fd connection, std::string name) override;
    void kill_disposable(std::string name) override;
    const InProcessPolicy* policy_cache() const override { return policy_cache_.get(); }
    io::RateLimiter* refusal_log_limiter() override { return &vm_log_limiter_; }

  private:
    enum class ClientState { Hello, Cmdline, Running };
    struct Client {
        uint64_t id = 0;
        io::Fd fd;
        Watch watch;
        ClientState state = ClientState::Hello;
        FrameBuffer in;
        std::optional<uint32_t> notify_port;
        std::unique_ptr<Timer> idle; // until the complete command arrived
    };
    struct Background {
        std::unique_ptr<qubesd::Call> qubesd_call;
        std::unique_ptr<Timer> deadline;
        Watch watch; // disposable waiters
        io::Fd fd;
    };

    bool watch_listener();
    uint32_t client_events() const;
    void update_interest();

    // agent side
    void on_agent_events(uint32_t events);
    void process_agent_frames();
    void handle_agent_frame(const Frame& frame);
    void handle_trigger(const Frame& frame);
    void handle_connection_terminated(const Frame& frame);
    void send_to_agent(uint32_t type, std::span<const std::byte> payload);
    void flush_agent();
    void send_refused(const protocol::Ident& ident);
    void reconnect_agent(int signal_fd);

    // client side
    void on_accept();
    void on_client_events(uint64_t id, uint32_t events);
    // Returns false when the client must be closed.
    bool handle_client_frame(Client& client, const Frame& frame);
    bool handle_cmdline(Client& client, const Frame& frame);
    void close_client(uint64_t id);
    void client_started_running(Client& client);
    // A rate-limited log line about the VM (true) or the local clients (false).
    template <typename... Args>
    void log_limited(bool vm, fmt::format_string<Args...> format, Args&&... args);

    size_t pending_count() const;
    Request* find_pending(std::string_view ident);
    void retire_request(uint64_t id);
    void defer(std::function<void()> action) { deferred_.push_back(std::move(action)); }
    void run_deferred();

    io::EventLoop& loop_;
    DaemonConfig config_;
    std::unique_ptr<transport::Backend> backend_;
    Reaper reaper_; // before requests_: destroyed after them (they hand children to it)
    std::unique_ptr<InProcessPolicy> policy_cache_; // before requests_ (they evaluate with it)
    ClientSocket socket_;
    Watch listener_watch_;
    PortAllocator ports_;
    std::array<uint64_t, PortAllocator::kCount> port_client_{}; // 0: nobody to notify

    std::unique_ptr<transport::Channel> agent_;
    uint32_t agent_version_ = 0;
    Watch agent_watch_;
    FrameBuffer agent_in_;
    std::vector<std::byte> agent_out_;
    size_t agent_out_sent_ = 0;
    bool agent_lost_ = false;
    bool paused_ = false;

    uint64_t next_id_ = 1;
    std::map<uint64_t, std::unique_ptr<Client>> clients_;
    io::AdmissionTable admission_{kMaxClients}; // clients that have not sent their command
    io::RateLimiter vm_log_limiter_{kLogBurst, kLogInterval};
    io::RateLimiter client_log_limiter_{kLogBurst, kLogInterval};
    std::map<uint64_t, std::unique_ptr<Background>> background_;
    std::map<uint64_t, std::unique_ptr<Request>> requests_; // after background_ (see ~Daemon)
    std::vector<std::function<void()>> deferred_;
    bool terminate_ = false;
    bool shutting_down_ = false;
};

} // namespace qrexec::daemon
