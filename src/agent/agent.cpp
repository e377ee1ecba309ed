#include "agent/agent.h"

#include "agent/call_handler.h"
#include "agent/signal_routes.h"
#include "io/admission.h"
#include "io/event_loop.h"
#include "io/fd.h"
#include "io/fd_limit.h"
#include "io/log.h"
#include "io/log_field.h"
#include "io/process.h"
#include "io/trace.h"
#include "io/unix_address.h"
#include "io/unix_socket.h"
#include "io/watch.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/requests.h"
#include "services/exec.h"
#include "services/lookup.h"
#include "services/session.h"
#include "services/user_session.h"
#include "transport/vchan.h"

#include <getopt.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace qrexec::agent {
namespace {

using namespace qrexec::protocol;

constexpr const char* kDefaultForkServerTemplate = "/var/run/qubes/qrexec-server.%s.sock";
constexpr size_t kMaxConnections = 256;
// Calls served in the agent's threads keep all their descriptors here (8 each:
// data vchan, the service's three, its pidfd, the engine's epoll, two
// eventfds), so a full table needs
// twice the usual soft RLIMIT_NOFILE of 1024. From kRaiseFdLimitAt calls on the
// agent raises its soft limit to kCallsFdLimit; at kLowerFdLimitAt it goes
// back, so that what it starts in quiet times simply inherits the old limit.
constexpr rlim_t kCallsFdLimit = 8192;
constexpr size_t kRaiseFdLimitAt = 64;
constexpr size_t kLowerFdLimitAt = 16;
constexpr size_t kMaxPendingTriggers = 256;
// dom0 is trusted, but its messages still get a bound (daemons never send more).
constexpr uint32_t kMaxControlPayload = 1 << 20;
constexpr uint32_t kMaxTriggerPayload = kTrigger4FixedSize + kMaxServiceNameLen;
constexpr auto kTriggerReadTimeout = std::chrono::seconds(10);

struct AgentOptions {
    std::string agent_socket = kDefaultAgentSocket;
    std::string fork_server_template = kDefaultForkServerTemplate;
    bool use_fork_server = true;
    // Serve every call in a forked handler process, also when no PAM session is
    // needed (what the agent did before it served calls in its own process).
    bool fork_per_call = false;
};

void print_usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [options]\n"
                 "AgentOptions:\n"
                 "  -h, --help - display usage\n"
                 "  -a, --agent-socket=PATH - path to listen on, default: %s\n"
                 "  -s, --fork-server-socket=PATH - path to the fork server socket (%%s is "
                 "replaced by the user name), default: %s\n"
                 "  -S, --no-fork-server - never use the fork server\n"
                 "  --fork-per-call - start a handler process for every call (default: a\n"
                 "      non-root agent serves calls in its own process)\n",
                 argv0, kDefaultAgentSocket, kDefaultForkServerTemplate);
}

std::optional<int> parse_agent_options(int argc, char** argv, AgentOptions& opts) {
    static const option long_options[] = {
        {"help", no_argument, nullptr, 'h'},
        {"agent-socket", required_argument, nullptr, 'a'},
        {"fork-server-socket", required_argument, nullptr, 's'},
        {"no-fork-server", no_argument, nullptr, 'S'},
        {"fork-per-call", no_argument, nullptr, 'P'},
        {nullptr, 0, nullptr, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "ha:s:S", long_options, nullptr)) != -1) {
        switch (opt) {
        case 'a':
            opts.agent_socket = optarg;
            break;
        case 's':
            opts.fork_server_template = optarg;
            break;
        case 'S':
            opts.use_fork_server = false;
            break;
        case 'P':
            opts.fork_per_call = true;
            break;
        default:
            print_usage(argv[0]);
            return 2;
        }
    }
    return std::nullopt;
}

void notify_systemd_ready() {
    const char* target = std::getenv("NOTIFY_SOCKET");
    if (!target || !*target) return;
    auto addr = io::UnixAddress::from_path_or_abstract(target);
    if (!addr) return;
    io::Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const char msg[] = "READY=1";
    if (fd) ::sendto(fd.get(), msg, sizeof msg - 1, 0, addr->get(), addr->size());
    unsetenv("NOTIFY_SOCKET");
}

class Agent {
  public:
    Agent(AgentOptions opts, std::unique_ptr<transport::Channel> control, io::Fd trigger_listener,
          int own_domain)
        : opts_(std::move(opts)), control_(std::move(control)),
          trigger_listener_(std::move(trigger_listener)), own_domain_(own_domain) {
        // A root agent opens a PAM session per call: that needs a process.
        in_process_ = !opts_.fork_per_call && ::geteuid() != 0;
    }

    int run();

  private:
    // A call served by a thread of this process (no PAM session needed).
    struct CallThread {
        io::Fd done;      // eventfd: the thread is about to return
        io::Fd switch_fd; // eventfd: SIGUSR1 routed to this call
        std::thread thread;
        ~CallThread() {
            if (thread.joinable()) thread.join();
        }
    };
    // The watches below are declared after what they watch: they end first.
    struct Connection {
        std::optional<io::Child> handler; // executed calls (handler process)
        std::unique_ptr<CallThread> call; // executed calls (served here)
        io::Fd fd;                        // fork-server or qrexec-client-vm connection
        uint32_t domain = 0;
        uint32_t port = 0;
        io::Watch watch; // the handler's exit or the connection's close
    };
    struct IncomingTrigger {
        explicit IncomingTrigger(io::EventLoop& loop) : timer(loop) {}
        io::Fd fd;
        std::vector<std::byte> data;
        io::Watch watch;
        io::Timer timer; // gives up on a silent qrexec-client-vm
    };
    struct UntrackedCall {
        std::optional<io::Child> handler;
        std::unique_ptr<CallThread> call;
        io::Watch watch;
    };
    struct SessionWaiter {
        io::Child child;
        io::Watch watch;
    };

    // control channel
    void on_control_event(uint32_t events);
    void handle_control_message(Header header, std::span<const std::byte> payload);
    void send_control(uint32_t type, std::span<const std::byte> payload);
    void flush_control();
    [[noreturn]] void fail(std::string_view why);

    // calls from dom0
    void handle_exec(uint32_t type, std::span<const std::byte> payload);
    void execute(CallRequest request);
    bool try_fork_server(const CallRequest& request);
    void start_handler(CallRequest request);
    bool start_in_process(const CallRequest& request);
    void on_sigusr1();
    void detach_calls();
    void handle_service_connect(std::span<const std::byte> payload);
    void handle_service_refused(std::span<const std::byte> payload);

    // wait-for-session
    void queue_for_session(CallRequest request);
    void on_session_ready();

    // qrexec-client-vm requests
    void accept_trigger();
    void on_trigger_readable(int fd);
    void drop_trigger(int fd, std::string_view why);
    void log_trigger_rejection(std::string_view why);
    void trace_trigger_received(int fd) const;

    // connections table
    // Tracks a call until its end, reported as CONNECTION_TERMINATED{domain, port}.
    void add_connection(Connection connection, uint32_t domain, uint32_t port);
    void finish_connection(size_t slot);
    void update_listener_interest();

    AgentOptions opts_;
    io::EventLoop loop_;
    std::unique_ptr<transport::Channel> control_;
    io::Fd trigger_listener_;
    io::Fd signal_fd_;
    // Calls served in this process: SIGUSR1 of their services (signal_routes.h).
    bool in_process_ = false;
    // Our soft RLIMIT_NOFILE while it is raised (0: not raised); call threads
    // read it when they start a service.
    std::atomic<rlim_t> replaced_fd_limit_{0};
    void adjust_fd_limit();
    io::Fd sigusr1_fd_;
    ServiceSignalRoutes routes_;
    io::RateLimiter sigusr1_log_limiter_{20, std::chrono::seconds(1)};

    std::vector<std::byte> control_in_;
    std::vector<std::byte> control_out_;
    size_t control_out_off_ = 0;

    std::map<size_t, Connection> connections_;
    std::map<int, UntrackedCall> untracked_; // calls run while the table was full, by exit fd
    std::map<int, IncomingTrigger> incoming_;
    // Full table: evict the oldest connection that has not sent its request.
    io::AdmissionTable trigger_admission_{kMaxPendingTriggers};
    io::RateLimiter trigger_log_limiter_{20, std::chrono::seconds(1)};
    std::map<int, io::Fd> pending_; // forwarded to dom0, waiting for its answer

    services::OwnUserName own_user_;
    int own_domain_ = 0; // for trace tokens only
    std::string trigger_token(int fd) const {
        return fmt::format("trig:{}:SOCKET{}", own_domain_, fd);
    }
    std::optional<SessionWaiter> session_waiter_;
    std::deque<CallRequest> session_queue_;
};

[[noreturn]] void Agent::fail(std::string_view why) {
    QLOG("{}", why);
    detach_calls();
    _exit(1);
}

// Handler processes keep running on their own; do not wait for them. Calls
// served by threads end with the process (its exit must not run destructors
// under them).
void Agent::detach_calls() {
    for (auto& [slot, c] : connections_) {
        if (c.handler) c.handler->detach();
        if (c.call) c.call->thread.detach();
    }
    for (auto& [fd, c] : untracked_) {
        if (c.handler) c.handler->detach();
        if (c.call) c.call->thread.detach();
    }
    if (session_waiter_) session_waiter_->child.detach();
}

void Agent::send_control(uint32_t type, std::span<const std::byte> payload) {
    auto header = encode_header({type, static_cast<uint32_t>(payload.size())});
    control_out_.insert(control_out_.end(), header.begin(), header.end());
    control_out_.insert(control_out_.end(), payload.begin(), payload.end());
    flush_control();
}

void Agent::flush_control() {
    while (control_out_off_ < control_out_.size()) {
        iovec iov{control_out_.data() + control_out_off_, control_out_.size() - control_out_off_};
        ssize_t n = control_->writev(&iov, 1);
        if (n > 0) {
            control_out_off_ += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        fail("Failed to write to the control vchan, dom0 is gone");
    }
    if (control_out_off_ == control_out_.size()) {
        control_out_.clear();
        control_out_off_ = 0;
    }
    loop_.modify(control_->fd(),
                 uint32_t{EPOLLIN} | (control_out_.empty() ? 0u : uint32_t{EPOLLOUT}));
    update_listener_interest();
}

// Like upstream, take new local requests only while the control channel is not
// backed up (they would only add to its queue).
void Agent::update_listener_interest() {
    bool accept_more = control_out_.size() - control_out_off_ < 65536;
    if (loop_.watching(trigger_listener_.get()))
        loop_.modify(trigger_listener_.get(), accept_more ? uint32_t{EPOLLIN} : 0u);
}

void Agent::on_control_event(uint32_t events) {
    if (events & EPOLLOUT) flush_control();
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    std::array<std::byte, 65536> buffer;
    ssize_t n = control_->read(buffer);
    if (n == 0) fail("dom0 closed the control vchan");
    if (n < 0) {
        if (errno == EAGAIN) return;
        fail("Failed to read from the control vchan");
    }
    control_in_.insert(control_in_.end(), buffer.begin(), buffer.begin() + n);
    size_t off = 0;
    for (;;) {
        auto frame =
            next_frame(std::span<const std::byte>(control_in_).subspan(off), kMaxControlPayload);
        if (frame.status == FrameStatus::TooLong)
            fail(fmt::format("control message too large: {} bytes (type 0x{:x})", frame.header->len,
                             frame.header->type));
        if (frame.status != FrameStatus::Ready) break;
        handle_control_message(*frame.header, frame.untrusted_payload);
        off += frame.size;
    }
    control_in_.erase(control_in_.begin(), control_in_.begin() + static_cast<long>(off));
}

void Agent::handle_control_message(Header header, std::span<const std::byte> payload) {
    switch (header.type) {
    case MSG_EXEC_CMDLINE:
    case MSG_JUST_EXEC:
        handle_exec(header.type, payload);
        break;
    case MSG_SERVICE_CONNECT:
        handle_service_connect(payload);
        break;
    case MSG_SERVICE_REFUSED:
        handle_service_refused(payload);
        break;
    default:
        fail(fmt::format("unexpected message type 0x{:x} from dom0", header.type));
    }
}

void Agent::handle_exec(uint32_t type, std::span<const std::byte> payload) {
    auto exec = decode_exec_request(payload);
    if (!exec) fail(fmt::format("{} too short: {} bytes", msg_type_name(type), payload.size()));
    auto request = make_call_request(type, exec->params.connect_domain, exec->params.connect_port,
                                     exec->cmdline, true);
    request.own_user = own_user_.get();
    if (io::trace_on())
        io::trace_line("exec-received", io::trace_vchan_token(static_cast<uint32_t>(own_domain_),
                                                              exec->params.connect_domain,
                                                              exec->params.connect_port));
    bool wants_session = request.command && request.command->is_service &&
                         !request.command->nogui && !request.config_failed &&
                         request.config.wait_for_session;
    if (wants_session) {
        queue_for_session(std::move(request));
        return;
    }
    execute(std::move(request));
}

void Agent::execute(CallRequest request) {
    bool eligible = opts_.use_fork_server && request.command && !request.command->nogui &&
                    !request.config_failed && !request.config.skip_service_descriptor &&
                    !request.config.exit_on_client_eof && !request.config.exit_on_service_eof;
    if (eligible && try_fork_server(request)) return;
    // JUST_EXEC's service outlives the call: it must not stay our child.
    if (in_process_ && request.type == MSG_EXEC_CMDLINE && start_in_process(request)) return;
    start_handler(std::move(request));
}

bool Agent::start_in_process(const CallRequest& request) {
    auto call = std::make_unique<CallThread>();
    call->done = io::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    call->switch_fd = io::Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!call->done || !call->switch_fd) {
        QLOG_ERRNO("eventfd for a call");
        return false;
    }
    InProcessCall context{::getpid(), call->switch_fd.get(), &routes_, sigusr1_fd_.get(),
                          &replaced_fd_limit_};
    try {
        call->thread = std::thread([request, context, done = call->done.get()] {
            try {
                serve_call_in_process(request, context);
            } catch (const std::exception& e) {
                QLOG("call to domain {} port {} failed: {}", request.connect_domain,
                     request.connect_port, e.what());
            }
            context.routes->remove_event_fd(context.switch_event_fd);
            uint64_t one = 1;
            // The last thing the thread does: the agent joins it and closes both eventfds.
            [[maybe_unused]] ssize_t n = ::write(done, &one, sizeof one);
        });
    } catch (const std::system_error& e) {
        QLOG("cannot start a thread for a call ({}), starting a handler process", e.what());
        return false;
    }
    Connection connection;
    connection.call = std::move(call);
    add_connection(std::move(connection), request.connect_domain, request.connect_port);
    return true;
}

// SIGUSR1 from a service of a call served here (signal_routes.h has the rule).
void Agent::on_sigusr1() {
    for (pid_t sender : routes_.drain(sigusr1_fd_.get())) {
        auto admission = sigusr1_log_limiter_.admit();
        if (admission.log)
            QLOG("SIGUSR1 from pid {} belongs to no running call, ignoring it{}", sender,
                 io::suppressed_note(admission.suppressed));
    }
}

bool Agent::try_fork_server(const CallRequest& request) {
    if (opts_.fork_server_template.empty()) return false;
    const auto& command = request.command->command;
    if (command.size() > kMaxQrexecCmdLen) return false;
    std::string path;
    auto pos = opts_.fork_server_template.find("%s");
    path = pos == std::string::npos ? opts_.fork_server_template
                                    : opts_.fork_server_template.substr(0, pos) + request.user +
                                          opts_.fork_server_template.substr(pos + 2);
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) return false;
    io::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    if (::connect(fd.get(), addr->get(), addr->size()) != 0) {
        if (errno != ENOENT && errno != ECONNREFUSED) QLOG_ERRNO("connect to fork server {}", path);
        return false;
    }
    ForkServerRequest fs;
    fs.type = static_cast<int32_t>(request.type);
    fs.connect_domain = static_cast<int32_t>(request.connect_domain);
    fs.connect_port = static_cast<int32_t>(request.connect_port);
    fs.cmdline = command;
    if (!io::write_all(fd.get(), encode_fork_server_request(fs))) {
        QLOG_ERRNO("write to fork server {}", path);
        return false;
    }
    Connection connection;
    connection.fd = std::move(fd);
    add_connection(std::move(connection), request.connect_domain, request.connect_port);
    return true;
}

void Agent::start_handler(CallRequest request) {
    io::Child child;
    try {
        child = io::spawn({}, [&]() -> int {
            io::close_fds_from(3);
            // One call's descriptors: the limit we were started with serves.
            if (rlim_t replaced = replaced_fd_limit_.load()) io::set_soft_fd_limit(replaced);
            return run_call_handler(request);
        });
    } catch (const std::exception& e) {
        QLOG("cannot start a call handler: {}", e.what());
        return;
    }
    Connection connection;
    connection.handler = std::move(child);
    add_connection(std::move(connection), request.connect_domain, request.connect_port);
}

void Agent::add_connection(Connection connection, uint32_t domain, uint32_t port) {
    connection.domain = domain;
    connection.port = port;
    size_t slot = 0;
    while (slot < kMaxConnections && connections_.count(slot))
        ++slot;
    if (slot == kMaxConnections) {
        // Upstream behaviour: the call proceeds, its end is never reported.
        QLOG("connection table full, the end of this call will not be reported");
        if (connection.handler || connection.call) {
            int fd =
                connection.handler ? connection.handler->exit_fd() : connection.call->done.get();
            auto& call = untracked_[fd];
            call.handler = std::move(connection.handler);
            call.call = std::move(connection.call);
            // It ended: erasing reaps it (io::Child) or joins it, and ends the watch.
            call.watch = io::Watch(loop_, fd, EPOLLIN, [this, fd](uint32_t) {
                untracked_.erase(fd);
                adjust_fd_limit();
            });
        }
        adjust_fd_limit();
        return;
    }
    int watch_fd = connection.handler ? connection.handler->exit_fd()
                   : connection.call  ? connection.call->done.get()
                                      : connection.fd.get();
    auto& added = connections_.emplace(slot, std::move(connection)).first->second;
    added.watch = io::Watch(loop_, watch_fd, EPOLLIN | EPOLLRDHUP,
                            [this, slot](uint32_t) { finish_connection(slot); });
    adjust_fd_limit();
}

void Agent::adjust_fd_limit() {
    size_t calls = connections_.size() + untracked_.size();
    rlim_t replaced = replaced_fd_limit_.load();
    if (!replaced && calls >= kRaiseFdLimitAt) {
        if (auto old = io::raise_soft_fd_limit(kCallsFdLimit)) replaced_fd_limit_.store(*old);
    } else if (replaced && calls <= kLowerFdLimitAt) {
        if (io::set_soft_fd_limit(replaced)) replaced_fd_limit_.store(0);
    }
}

void Agent::finish_connection(size_t slot) {
    auto it = connections_.find(slot);
    if (it == connections_.end()) return;
    auto& connection = it->second;
    if (connection.handler) {
        connection.handler->wait();
    } else if (connection.call) {
        connection.call->thread.join(); // it has written `done`: it is returning
    } else {
        std::array<std::byte, 256> buffer;
        ssize_t n = ::read(connection.fd.get(), buffer.data(), buffer.size());
        if (n > 0) {
            QLOG("unexpected data on a call connection, closing it");
        } else if (n < 0 && errno != ECONNRESET && errno != EAGAIN) {
            QLOG_ERRNO("read from a call connection");
        }
        if (n < 0 && errno == EAGAIN) return; // spurious wakeup
    }
    auto params = encode_exec_params({connection.domain, connection.port});
    connections_.erase(it);
    adjust_fd_limit();
    send_control(MSG_CONNECTION_TERMINATED, params);
}

void Agent::handle_service_connect(std::span<const std::byte> payload) {
    auto connect = decode_service_connect(payload);
    if (!connect) fail(fmt::format("MSG_SERVICE_CONNECT too short: {} bytes", payload.size()));
    auto params = connect->params;
    auto ident = connect->ident;
    auto fd = parse_socket_ident(ident);
    auto it = fd ? pending_.find(*fd) : pending_.end();
    if (it == pending_.end()) {
        QLOG("MSG_SERVICE_CONNECT for an unknown request '{}', ignoring", ident);
        return;
    }
    io::Fd client = std::move(it->second);
    pending_.erase(it);
    if (io::trace_on())
        io::trace_line("trigger-answered",
                       trigger_token(*fd) + " " +
                           io::trace_vchan_token(static_cast<uint32_t>(own_domain_),
                                                 params.connect_domain, params.connect_port));
    auto answer = encode_exec_params(params);
    if (!io::write_all(client.get(), answer)) {
        QLOG_ERRNO("failed to pass the connection parameters to qrexec-client-vm");
    }
    Connection connection;
    connection.fd = std::move(client);
    add_connection(std::move(connection), params.connect_domain, params.connect_port);
}

void Agent::handle_service_refused(std::span<const std::byte> payload) {
    auto refused = decode_service_refused(payload);
    if (!refused) fail(fmt::format("MSG_SERVICE_REFUSED with bad length {}", payload.size()));
    auto ident = *refused;
    auto fd = parse_socket_ident(ident);
    auto it = fd ? pending_.find(*fd) : pending_.end();
    if (it == pending_.end()) {
        QLOG("MSG_SERVICE_REFUSED for an unknown request '{}', ignoring", ident);
        return;
    }
    if (io::trace_on()) io::trace_line("trigger-refused", trigger_token(*fd));
    pending_.erase(it); // closing it tells qrexec-client-vm "refused"
}

void Agent::queue_for_session(CallRequest request) {
    if (session_waiter_) {
        if (session_queue_.size() >= kMaxConnections) {
            execute(std::move(request));
            return;
        }
        session_queue_.push_back(std::move(request));
        return;
    }
    std::string user = request.user;
    std::string source = request.command->source_domain;
    io::Child waiter;
    try {
        auto pipe = io::make_pipe();
        auto paths = services::SearchPaths::from_environment();
        waiter = services::spawn_wait_for_session(paths.service_dirs, source, pipe.first.get());
        if (rlim_t replaced = replaced_fd_limit_.load())
            io::restore_soft_fd_limit(waiter.pid(), replaced);
        pipe.first.reset();
        io::write_all(pipe.second.get(), user + "\n");
    } catch (const std::exception& e) {
        QLOG("cannot start qubes.WaitForSession: {}", e.what());
        execute(std::move(request));
        return;
    }
    session_queue_.push_back(std::move(request));
    int fd = waiter.exit_fd();
    session_waiter_.emplace(
        SessionWaiter{std::move(waiter),
                      io::Watch(loop_, fd, EPOLLIN, [this](uint32_t) { on_session_ready(); })});
}

void Agent::on_session_ready() {
    session_waiter_.reset(); // it exited: reaped, and its watch ends
    auto queue = std::move(session_queue_);
    session_queue_.clear();
    for (auto& request : queue)
        execute(std::move(request));
}

void Agent::accept_trigger() {
    int fd = ::accept4(trigger_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
        if (errno == EMFILE || errno == ENFILE) {
            QLOG_ERRNO("accept");
            return;
        }
        QLOG_ERRNO("accept");
        fail("cannot accept on the agent socket");
    }
    auto decision = trigger_admission_.decide(incoming_.size() + pending_.size());
    if (!decision.admit) {
        log_trigger_rejection("too many pending requests from qrexec-client-vm, refusing one");
        ::close(fd);
        return;
    }
    if (decision.evict)
        drop_trigger(static_cast<int>(*decision.evict),
                     "too many connections on the agent socket: dropping the oldest one that "
                     "has not sent its request");
    auto& trigger = incoming_.try_emplace(fd, loop_).first->second;
    trigger.fd = io::Fd(fd);
    trigger.timer.start(kTriggerReadTimeout, [this, fd] {
        drop_trigger(fd, "timeout reading a request from qrexec-client-vm");
    });
    trigger_admission_.opened(static_cast<uint64_t>(fd));
    trigger.watch =
        io::Watch(loop_, fd, EPOLLIN, [this, fd](uint32_t) { on_trigger_readable(fd); });
}

void Agent::log_trigger_rejection(std::string_view why) {
    auto admission = trigger_log_limiter_.admit();
    if (admission.log) QLOG("{}{}", why, io::suppressed_note(admission.suppressed));
}

void Agent::drop_trigger(int fd, std::string_view why) {
    auto it = incoming_.find(fd);
    if (it == incoming_.end()) return;
    log_trigger_rejection(why);
    trigger_admission_.closed(static_cast<uint64_t>(fd));
    incoming_.erase(it); // its watch and timer end with it
}

void Agent::on_trigger_readable(int fd) {
    auto& trigger = incoming_.at(fd);
    // Read no further than the request's end: the header was checked when it came in.
    auto so_far = next_frame(std::span<const std::byte>(trigger.data), kMaxTriggerPayload);
    size_t want =
        so_far.status == FrameStatus::NeedPayload ? kHeaderSize + so_far.header->len : kHeaderSize;
    size_t old = trigger.data.size();
    trigger.data.resize(want);
    ssize_t n = ::read(fd, trigger.data.data() + old, want - old);
    if (n <= 0) {
        trigger.data.resize(old);
        if (n < 0 && errno == EAGAIN) return;
        drop_trigger(fd, "qrexec-client-vm closed its connection before sending a request");
        return;
    }
    trigger.data.resize(old + static_cast<size_t>(n));
    auto frame = next_frame(std::span<std::byte>(trigger.data), kMaxTriggerPayload);
    if (!frame.header) return;
    auto header = *frame.header;
    if (frame.status == FrameStatus::TooLong || !is_local_trigger_header(header)) {
        drop_trigger(fd, "Invalid request received from qrexec-client-vm, is it outdated?");
        return;
    }
    if (frame.status != FrameStatus::Ready) return;

    // Complete: mark it with our handle for the answer, forward it byte-identical otherwise.
    if (!set_trigger_ident(header.type, frame.untrusted_payload, make_socket_ident(fd))) {
        drop_trigger(fd, "Invalid request received from qrexec-client-vm, is it outdated?");
        return;
    }
    trigger_admission_.completed(static_cast<uint64_t>(fd));
    auto data = std::move(trigger.data);
    if (io::trace_on()) trace_trigger_received(fd);
    pending_.emplace(fd, std::move(trigger.fd));
    incoming_.erase(fd);
    send_control(header.type, std::span<const std::byte>(data).subspan(kHeaderSize));
}

// Links the caller's process (its pid, from the socket) to the trigger's ident.
void Agent::trace_trigger_received(int fd) const {
    ucred peer{};
    socklen_t len = sizeof peer;
    std::string caller;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0)
        caller = fmt::format(" cvm:{}", peer.pid);
    io::trace_line("trigger-received", "+" + trigger_token(fd) + caller);
}

int Agent::run() {
    signal_fd_ = io::make_signal_fd({SIGTERM, SIGINT});
    // Before any call thread exists, so that every thread has SIGUSR1 blocked.
    if (in_process_) {
        sigusr1_fd_ = io::make_signal_fd({SIGUSR1});
        loop_.watch(sigusr1_fd_.get(), EPOLLIN, [this](uint32_t) { on_sigusr1(); });
    }
    bool stop = false;
    loop_.watch(signal_fd_.get(), EPOLLIN, [&](uint32_t) {
        io::read_signals(signal_fd_.get());
        stop = true;
    });
    loop_.watch(control_->fd(), EPOLLIN, [this](uint32_t ev) { on_control_event(ev); });
    loop_.watch(trigger_listener_.get(), EPOLLIN, [this](uint32_t) { accept_trigger(); });
    while (!stop)
        loop_.run_once();
    ::unlink(opts_.agent_socket.c_str());
    detach_calls();
    // Calls still served by threads end here, without destructors under them.
    if (in_process_) _exit(0);
    return 0;
}

} // namespace

int agent_main(int argc, char** argv) {
    io::require_standard_fds("qrexec-agent");
    AgentOptions opts;
    if (auto code = parse_agent_options(argc, argv, opts)) return *code;
    signal(SIGPIPE, SIG_IGN);

    auto backend = transport::default_backend();
    auto server = backend->listen(0, static_cast<int>(kVchanBasePort), 4096);
    if (!server) {
        QLOG("Cannot create the control vchan");
        return 1;
    }
    auto control = server->wait_for_client(-1);
    server.reset();
    if (!control) {
        QLOG("Cannot accept the control vchan connection");
        return 1;
    }
    // The agent speaks first (P§4.1).
    auto hello = encode_frame(MSG_HELLO, encode_hello(kProtocolVersion));
    if (!control->send_all(hello, -1)) {
        QLOG("Failed to send HELLO to dom0");
        return 1;
    }
    std::array<std::byte, kHeaderSize + 4> reply{};
    if (!control->recv_all(reply, -1)) {
        QLOG("Failed to receive dom0's HELLO");
        return 1;
    }
    auto untrusted_hello = next_frame(std::span<const std::byte>(reply), 4);
    auto hello_check = check_hello(untrusted_hello.header.value_or(Header{}),
                                   untrusted_hello.untrusted_payload, kVchanHello);
    if (!hello_check.version) {
        QLOG("{} from dom0", hello_check.error);
        return 1;
    }

    // Any local user may call: the socket is world-writable (AGENT.md §2.3 step 4).
    io::Fd trigger =
        io::listen_unix(opts.agent_socket, {.backlog = 5, .nonblocking = true, .bind_umask = 0});
    if (!trigger) {
        QLOG_ERRNO("cannot listen on {}", opts.agent_socket);
        return 1;
    }
    notify_systemd_ready();
    Agent agent(std::move(opts), std::move(control), std::move(trigger), backend->own_domain());
    return agent.run();
}

} // namespace qrexec::agent
