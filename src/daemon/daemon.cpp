#include "daemon/daemon.h"

#include "io/log.h"
#include "io/trace.h"
#include "io/unix_socket.h"
#include "protocol/frame.h"
#include "protocol/requests.h"
#include "protocol/trigger.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace qrexec::daemon {

namespace {
// Above this much unsent control-channel data we stop reading the agent and
// the clients (upstream polls them only while the vchan has buffer space).
constexpr size_t kAgentHighWater = 1 << 20;
constexpr size_t kReadChunk = 65536;
constexpr int kListenBacklog = 64;
constexpr std::chrono::milliseconds kKillTimeout{60'000};
constexpr std::string_view kDefaultPrefix = "DEFAULT:";

bool send_frame_nonblocking(int fd, uint32_t type, std::span<const std::byte> payload) {
    auto frame = protocol::encode_frame(type, payload);
    // Tiny frames on a fresh socket: a short write means the client is broken.
    ssize_t n = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == static_cast<ssize_t>(frame.size());
}
} // namespace

template <typename... Args>
void Daemon::log_limited(bool vm, fmt::format_string<Args...> format, Args&&... args) {
    auto admission = (vm ? vm_log_limiter_ : client_log_limiter_).admit();
    if (!admission.log) return;
    QLOG("{}{}", fmt::format(format, std::forward<Args>(args)...),
         io::suppressed_note(admission.suppressed));
}

// ---- handshake --------------------------------------------------------------

std::optional<uint32_t> agent_handshake(transport::Channel& channel, int timeout_ms) {
    std::array<std::byte, protocol::kHeaderSize + 4> hello{};
    if (!channel.recv_all(std::span<std::byte>(hello.data(), protocol::kHeaderSize), timeout_ms)) {
        QLOG("cannot read HELLO from the agent");
        return std::nullopt;
    }
    auto header = protocol::decode_header(
        std::span<const std::byte, protocol::kHeaderSize>(hello.data(), protocol::kHeaderSize));
    if (!protocol::is_hello_header(header)) {
        QLOG("invalid HELLO from the agent (type 0x{:x}, len {})", header.type, header.len);
        return std::nullopt;
    }
    auto payload = std::span<std::byte>(hello.data() + protocol::kHeaderSize, 4);
    if (!channel.recv_all(payload, timeout_ms)) {
        QLOG("cannot read HELLO from the agent");
        return std::nullopt;
    }
    auto checked = protocol::check_hello(header, payload, protocol::kVchanHello);
    if (!checked.version) {
        QLOG("{} from the agent", checked.error);
        return std::nullopt;
    }
    uint32_t version = checked.peer_version;
    uint32_t used = *checked.version;
    // Upstream echoes the agent's version (not its own) back.
    auto reply = protocol::encode_frame(protocol::MSG_HELLO, protocol::encode_hello(version));
    if (!channel.send_all(reply, timeout_ms)) {
        QLOG("cannot send HELLO to the agent");
        return std::nullopt;
    }
    return used;
}

// ---- ClientSocket -----------------------------------------------------------

ClientSocket::ClientSocket(int domid, std::string name, std::string uuid)
    : socket_name_("qrexec." + std::to_string(domid)), links_{"qrexec.uuid:" + uuid,
                                                              "qrexec." + std::move(name)} {}

bool ClientSocket::create() {
    remove();
    mode_t old_mask = ::umask(0); // world-accessible socket; the directory guards it
    struct RestoreMask {
        ~RestoreMask() { ::umask(0077); }
    } restore;
    (void)old_mask;
    for (const auto& link : links_) {
        if (::unlink(link.c_str()) != 0 && errno != ENOENT) {
            QLOG_ERRNO("unlink({}) failed", link);
            return false;
        }
        if (::symlink(socket_name_.c_str(), link.c_str()) != 0)
            QLOG_ERRNO("symlink({}, {}) failed", socket_name_, link);
    }
    if (::unlink(socket_name_.c_str()) != 0 && errno != ENOENT) {
        QLOG_ERRNO("unlink({}) failed", socket_name_);
        return false;
    }
    // World-accessible socket; the directory guards it. Usable once it exists.
    io::Fd fd = io::listen_unix(socket_name_,
                                {.backlog = kListenBacklog, .nonblocking = true, .bind_umask = 0});
    if (!fd) {
        QLOG_ERRNO("cannot create socket {}", socket_name_);
        return false;
    }
    listener_ = std::move(fd);
    created_ = true;
    return true;
}

void ClientSocket::remove() {
    if (!created_) return;
    ::unlink(socket_name_.c_str());
    for (const auto& link : links_)
        ::unlink(link.c_str());
    listener_.reset();
    created_ = false;
}

// ---- Daemon: setup ----------------------------------------------------------

Daemon::Daemon(io::EventLoop& loop, DaemonConfig config,
               std::unique_ptr<transport::Backend> backend)
    : loop_(loop), config_(std::move(config)), backend_(std::move(backend)), reaper_(loop),
      socket_(static_cast<int>(config_.settings.domid), config_.settings.domname, config_.uuid),
      ports_(config_.settings.domid) {
    if (config_.in_process)
        policy_cache_ = std::make_unique<InProcessPolicy>(loop_, *config_.in_process);
}

Daemon::~Daemon() {
    shutting_down_ = true;
    requests_.clear();
    clients_.clear();
    background_.clear();
    listener_watch_.reset();
    agent_watch_.reset();
}

bool Daemon::watch_listener() {
    listener_watch_ = Watch(loop_, socket_.fd(), paused_ ? 0u : uint32_t{EPOLLIN},
                            [this](uint32_t) { on_accept(); });
    return true;
}

void Daemon::attach_agent(std::unique_ptr<transport::Channel> channel, uint32_t version) {
    agent_ = std::move(channel);
    agent_version_ = version;
    agent_in_.clear();
    agent_out_.clear();
    agent_out_sent_ = 0;
    agent_lost_ = false;
    paused_ = false;
    agent_watch_ =
        Watch(loop_, agent_->fd(), EPOLLIN, [this](uint32_t ev) { on_agent_events(ev); });
}

int Daemon::run(int signal_fd) {
    Watch signals(loop_, signal_fd, EPOLLIN, [this, signal_fd](uint32_t) {
        for (int sig : io::read_signals(signal_fd))
            if (sig == SIGTERM) terminate_ = true;
    });
    while (!terminate_) {
        loop_.run_once(std::chrono::milliseconds(1000));
        run_deferred();
        if (agent_lost_ && !terminate_) {
            signals.reset();
            reconnect_agent(signal_fd);
            signals = Watch(loop_, signal_fd, EPOLLIN, [this, signal_fd](uint32_t) {
                for (int sig : io::read_signals(signal_fd))
                    if (sig == SIGTERM) terminate_ = true;
            });
        }
    }
    return 0;
}

void Daemon::run_deferred() {
    while (!deferred_.empty()) {
        auto actions = std::move(deferred_);
        deferred_.clear();
        for (auto& action : actions)
            action();
    }
}

uint32_t Daemon::client_events() const {
    return paused_ ? 0u : uint32_t{EPOLLIN};
}

void Daemon::update_interest() {
    if (!agent_) return;
    size_t pending = agent_out_.size() - agent_out_sent_;
    bool congested = pending > kAgentHighWater;
    agent_watch_.modify((congested ? 0u : uint32_t{EPOLLIN}) | (pending ? uint32_t{EPOLLOUT} : 0u));
    if (congested == paused_) return;
    paused_ = congested;
    if (paused_) QLOG("control channel congested ({} bytes queued), pausing clients", pending);
    listener_watch_.modify(client_events());
    for (auto& [id, client] : clients_)
        client->watch.modify(client_events());
}

// ---- agent side -------------------------------------------------------------

void Daemon::send_to_agent(uint32_t type, std::span<const std::byte> payload) {
    if (!agent_ || agent_lost_) {
        QLOG("no agent connection, dropping {} message", protocol::msg_type_name(type));
        return;
    }
    auto header = protocol::encode_header({type, static_cast<uint32_t>(payload.size())});
    agent_out_.insert(agent_out_.end(), header.begin(), header.end());
    agent_out_.insert(agent_out_.end(), payload.begin(), payload.end());
    flush_agent();
}

void Daemon::flush_agent() {
    while (agent_out_sent_ < agent_out_.size()) {
        iovec iov{agent_out_.data() + agent_out_sent_, agent_out_.size() - agent_out_sent_};
        ssize_t n = agent_->writev(&iov, 1);
        if (n > 0) {
            agent_out_sent_ += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        // Handled from the main loop, never from inside a client/request callback.
        QLOG_ERRNO("write to the agent failed");
        agent_lost_ = true;
        break;
    }
    if (agent_out_sent_ == agent_out_.size()) {
        agent_out_.clear();
        agent_out_sent_ = 0;
    }
    update_interest();
}

void Daemon::on_agent_events(uint32_t events) {
    if (agent_lost_) return;
    if (events & EPOLLOUT) flush_agent();
    bool hangup = events & (EPOLLHUP | EPOLLERR);
    if (!(events & EPOLLIN) && !hangup) return;
    if (paused_ && !hangup) return;
    std::vector<std::byte> buffer(kReadChunk);
    ssize_t n = agent_->read(buffer);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        QLOG_ERRNO("read from the agent failed");
        agent_lost_ = true;
        agent_watch_.modify(0);
        return;
    }
    if (n == 0) {
        if (agent_in_.buffered())
            QLOG("agent closed the connection inside a message ({} bytes discarded)",
                 agent_in_.buffered());
        agent_lost_ = true;
        agent_watch_.modify(0);
        return;
    }
    agent_in_.append(std::span<const std::byte>(buffer.data(), static_cast<size_t>(n)));
    process_agent_frames();
}

void Daemon::process_agent_frames() {
    for (;;) {
        Frame frame;
        std::string fatal;
        auto status = agent_in_.next(frame, [&](protocol::Header h) {
            auto error = protocol::check_agent_header(h, agent_version_);
            if (error) fatal = *error;
            return !error;
        });
        if (status == FrameBuffer::Status::NeedMore) return;
        if (status == FrameBuffer::Status::Rejected) {
            QLOG("protocol error from the agent: {}; exiting", fatal);
            throw DaemonExit{1};
        }
        handle_agent_frame(frame);
    }
}

void Daemon::handle_agent_frame(const Frame& frame) {
    switch (frame.header.type) {
    case protocol::MSG_TRIGGER_SERVICE:
    case protocol::MSG_TRIGGER_SERVICE3:
    case protocol::MSG_TRIGGER_SERVICE4:
        handle_trigger(frame);
        return;
    case protocol::MSG_CONNECTION_TERMINATED:
        handle_connection_terminated(frame);
        return;
    default: // check_agent_header let nothing else through
        throw DaemonExit{1};
    }
}

void Daemon::handle_trigger(const Frame& frame) {
    auto decoded = protocol::decode_trigger(frame.header.type, frame.payload);
    if (!decoded.valid) {
        log_limited(true, "refusing invalid {} from {} (ident '{}'): {}",
                    protocol::msg_type_name(frame.header.type), config_.settings.domname,
                    io::log_field(protocol::get_fixed_string(decoded.ident)),
                    io::log_field(decoded.error, 256));
        send_refused(decoded.ident);
        return;
    }
    if (pending_count() >= kMaxPending) {
        log_limited(true, "too many pending requests ({}), refusing '{}'", kMaxPending,
                    io::log_field(protocol::ident_text(decoded.ident)));
        send_refused(decoded.ident);
        return;
    }
    uint64_t id = next_id_++;
    auto request = std::make_unique<Request>(*this, config_.settings, id, *decoded.valid);
    auto* raw = request.get();
    requests_[id] = std::move(request);
    raw->start();
}

void Daemon::handle_connection_terminated(const Frame& frame) {
    auto decoded = protocol::decode_exec_params(frame.payload);
    if (!decoded) {
        QLOG("MSG_CONNECTION_TERMINATED too short; exiting");
        throw DaemonExit{1};
    }
    auto params = *decoded;
    if (!PortAllocator::in_range(params.connect_port)) {
        QLOG("MSG_CONNECTION_TERMINATED with invalid port {}; exiting", params.connect_port);
        throw DaemonExit{1};
    }
    if (!ports_.release(params.connect_domain, params.connect_port)) return;
    auto& notify = port_client_[params.connect_port - PortAllocator::kFirstPort];
    if (uint64_t client = std::exchange(notify, 0)) close_client(client);
}

void Daemon::send_refused(const protocol::Ident& ident) {
    send_to_agent(protocol::MSG_SERVICE_REFUSED, ident);
}

void Daemon::reconnect_agent(int signal_fd) {
    QLOG("qrexec-agent has disconnected");
    // No agent: no socket files, no clients, no pending requests. Ports stay.
    listener_watch_.reset();
    socket_.remove();
    clients_.clear();
    port_client_.fill(0);
    admission_ = io::AdmissionTable(kMaxClients);
    requests_.clear();
    agent_watch_.reset();
    agent_.reset();
    agent_in_.clear();
    agent_out_.clear();
    agent_out_sent_ = 0;
    paused_ = false;

    for (int sig : io::read_signals(signal_fd))
        if (sig == SIGTERM) throw DaemonExit{1};
    // While waiting for the agent SIGTERM kills us at once, by the signal.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::signal(SIGTERM, SIG_DFL);
    ::sigprocmask(SIG_UNBLOCK, &term, nullptr);
    auto channel = backend_->connect(static_cast<int>(config_.settings.domid),
                                     static_cast<int>(protocol::kVchanBasePort), -1);
    std::optional<uint32_t> version;
    if (channel) version = agent_handshake(*channel, -1);
    ::sigprocmask(SIG_BLOCK, &term, nullptr);
    if (!version) {
        QLOG("Failed to reconnect to qrexec-agent, terminating");
        throw DaemonExit{1};
    }
    attach_agent(std::move(channel), *version);
    if (!create_socket()) throw DaemonExit{1};
    QLOG("qrexec-agent has reconnected");
}

// ---- client side ------------------------------------------------------------

void Daemon::on_accept() {
    int raw = ::accept4(socket_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (raw < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) QLOG_ERRNO("accept failed");
        return;
    }
    io::Fd fd(raw);
    auto decision = admission_.decide(clients_.size());
    if (!decision.admit) {
        log_limited(false, "too many clients ({}) with calls in progress, rejecting a connection",
                    clients_.size());
        return;
    }
    if (decision.evict) {
        log_limited(false,
                    "too many clients ({}): dropping the oldest one that has not sent its "
                    "command",
                    clients_.size());
        close_client(*decision.evict);
    }
    if (!send_frame_nonblocking(fd.get(), protocol::MSG_HELLO,
                                protocol::encode_hello(protocol::kClientProtocolVersion)))
        return;
    uint64_t id = next_id_++;
    auto client = std::make_unique<Client>();
    client->id = id;
    client->fd = std::move(fd);
    client->watch = Watch(loop_, client->fd.get(), client_events(),
                          [this, id](uint32_t ev) { on_client_events(id, ev); });
    client->idle = std::make_unique<Timer>(loop_);
    client->idle->start(config_.settings.timeouts.client_idle, [this, id] {
        log_limited(false, "client sent no complete command within {} ms, closing it",
                    config_.settings.timeouts.client_idle.count());
        close_client(id);
    });
    admission_.opened(id);
    clients_[id] = std::move(client);
}

void Daemon::client_started_running(Client& client) {
    client.state = ClientState::Running;
    client.idle.reset();
    admission_.completed(client.id);
}

void Daemon::close_client(uint64_t id) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    admission_.closed(id);
    if (auto port = it->second->notify_port) {
        auto& slot = port_client_[*port - PortAllocator::kFirstPort];
        if (slot == id) slot = 0;
    }
    clients_.erase(it);
}

void Daemon::on_client_events(uint64_t id, uint32_t events) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    Client& client = *it->second;
    bool hangup = events & (EPOLLHUP | EPOLLERR);
    if (paused_ && !hangup) return;
    if (client.state == ClientState::Running) {
        // The client's only business now is to close; anything else ends it too.
        char byte;
        if (::read(client.fd.get(), &byte, 1) > 0)
            log_limited(false, "unexpected data from a client in RUNNING state, closing it");
        close_client(id);
        return;
    }
    std::vector<std::byte> buffer(kReadChunk);
    ssize_t n = ::read(client.fd.get(), buffer.data(), buffer.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        close_client(id);
        return;
    }
    client.in.append(std::span<const std::byte>(buffer.data(), static_cast<size_t>(n)));
    while (client.state != ClientState::Running) {
        Frame frame;
        auto status = client.in.next(frame, [&](protocol::Header h) {
            if (client.state == ClientState::Hello) return protocol::is_hello_header(h);
            return protocol::is_client_command_header(h);
        });
        if (status == FrameBuffer::Status::NeedMore) return;
        if (status == FrameBuffer::Status::Rejected || !handle_client_frame(client, frame)) {
            close_client(id);
            return;
        }
    }
    if (client.in.buffered()) {
        log_limited(false, "unexpected data after the command from a client, closing it");
        close_client(id);
    }
}

bool Daemon::handle_client_frame(Client& client, const Frame& frame) {
    if (client.state == ClientState::Hello) {
        auto checked =
            protocol::check_hello(frame.header, frame.payload, protocol::kLocalSocketHello);
        if (!checked.version) {
            log_limited(false, "client HELLO refused: {}", checked.error);
            return false;
        }
        client.state = ClientState::Cmdline;
        return true;
    }
    return handle_cmdline(client, frame);
}

bool Daemon::handle_cmdline(Client& client, const Frame& frame) {
    const uint32_t type = frame.header.type;
    auto decoded = protocol::decode_client_command(frame.header, frame.payload);
    if (!decoded) {
        log_limited(false, "client command not NUL-terminated, closing it");
        return false;
    }
    auto params = decoded->params;
    auto body = decoded->body;

    Request* matched = nullptr;
    if (type == protocol::MSG_SERVICE_CONNECT) {
        auto ident = protocol::get_fixed_string(body);
        matched = find_pending(ident);
        if (!matched) {
            log_limited(false, "SERVICE_CONNECT for '{}': not requested or already handled",
                        io::log_field(ident));
            return false;
        }
        matched->mark_finished(); // allowed: a later failure must not refuse it
    } else if (params.connect_port != 0) {
        log_limited(false, "{} from a client with connect_port {} (expected 0); accepted",
                    protocol::msg_type_name(type), params.connect_port);
    }
    // From here on, a matched request is either forwarded or refused.
    auto give_up = [&](const std::string& why) {
        log_limited(false, "{}", why);
        if (matched) {
            send_refused(matched->ident());
            retire_request(matched->id());
        }
        return false;
    };

    uint32_t port = params.connect_port;
    if (port == 0) {
        if (params.connect_domain != 0 && ports_.held_by(params.connect_domain) >= kMaxPortsPerPeer)
            return give_up("domain " + std::to_string(params.connect_domain) + " holds " +
                           std::to_string(kMaxPortsPerPeer) +
                           " data ports already (calls not yet connected or finished)");
        auto allocated = ports_.allocate(params.connect_domain);
        if (!allocated)
            return give_up("no free port for domain " + std::to_string(params.connect_domain));
        port = *allocated;
        if (io::trace_on()) // before the reply: whoever logs this vchan next comes later
            io::trace_line("exec-sent", "+" + io::trace_vchan_token(config_.settings.domid,
                                                                    params.connect_domain, port));
        auto reply = protocol::encode_exec_params({config_.settings.domid, port});
        if (!send_frame_nonblocking(client.fd.get(), type, reply)) {
            ports_.release(params.connect_domain, port);
            return give_up("cannot send the port to the client");
        }
        port_client_[port - PortAllocator::kFirstPort] = client.id;
        client.notify_port = port;
    } else if (!PortAllocator::in_range(port)) {
        return give_up("client asked for invalid port " + std::to_string(port));
    }

    std::vector<std::byte> forward = protocol::encode_exec_params({params.connect_domain, port});
    auto command = protocol::as_text(body);
    if (type != protocol::MSG_SERVICE_CONNECT &&
        command.substr(0, kDefaultPrefix.size()) == kDefaultPrefix) {
        auto user = protocol::as_bytes(config_.default_user);
        forward.insert(forward.end(), user.begin(), user.end());
        body = body.subspan(kDefaultPrefix.size() - 1); // keep the ':'
    }
    forward.insert(forward.end(), body.begin(), body.end());
    send_to_agent(type, forward);
    if (matched) retire_request(matched->id());
    client_started_running(client);
    return true;
}

// ---- requests ---------------------------------------------------------------

size_t Daemon::pending_count() const {
    return static_cast<size_t>(std::count_if(requests_.begin(), requests_.end(),
                                             [](const auto& r) { return !r.second->finished(); }));
}

Request* Daemon::find_pending(std::string_view ident) {
    for (auto& [id, request] : requests_)
        if (!request->finished() && request->ident_text() == ident) return request.get();
    return nullptr;
}

void Daemon::retire_request(uint64_t id) {
    if (auto it = requests_.find(id); it != requests_.end()) it->second->mark_finished();
    defer([this, id] { requests_.erase(id); });
}

void Daemon::request_connect(Request& request, uint32_t domain, uint32_t port) {
    QLOG("{} allowed: connecting to domain {} port {}", request.describe(), domain, port);
    auto payload = protocol::encode_exec_params({domain, port}, request.ident());
    send_to_agent(protocol::MSG_SERVICE_CONNECT, payload);
    retire_request(request.id());
}

void Daemon::request_refuse(Request& request) {
    send_refused(request.ident());
    retire_request(request.id());
}

void Daemon::keep_disposable(io::Fd connection, std::string name) {
    uint64_t id = next_id_++;
    auto waiter = std::make_unique<Background>();
    waiter->fd = std::move(connection);
    waiter->watch = Watch(loop_, waiter->fd.get(), EPOLLIN, [this, id, name](uint32_t) {
        auto it = background_.find(id);
        if (it == background_.end()) return;
        char buffer[256];
        ssize_t n = ::read(it->second->fd.get(), buffer, sizeof buffer);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) return;
        // The disposable's daemon closed the connection: its call terminated.
        it->second->watch.reset();
        defer([this, id] { background_.erase(id); });
        kill_disposable(name);
    });
    background_[id] = std::move(waiter);
}

void Daemon::kill_disposable(std::string name) {
    if (shutting_down_) {
        QLOG("exiting: not killing disposable {}", name);
        return;
    }
    QLOG("killing disposable {}", name);
    uint64_t id = next_id_++;
    auto job = std::make_unique<Background>();
    job->deadline = std::make_unique<Timer>(loop_);
    job->deadline->start(kKillTimeout, [this, id, name] {
        QLOG("timed out killing disposable {}", name);
        defer([this, id] { background_.erase(id); });
    });
    job->qubesd_call = qubesd::kill_vm(loop_, config_.settings.qubesd_socket, name,
                                       [this, id](qubesd::Outcome killed) {
                                           if (!killed.ok) QLOG("{}", killed.error);
                                           defer([this, id] { background_.erase(id); });
                                       });
    background_[id] = std::move(job);
}

} // namespace qrexec::daemon
