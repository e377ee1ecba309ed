#include "policy_server/policy_server.h"

#include "io/log.h"
#include "io/unix_address.h"
#include "policy_server/decision_log.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

namespace qrexec::policy {

namespace {
// Simultaneous clients beyond this are refused (closed at once) to bound memory/fds.
constexpr size_t kMaxClients = 1000;
constexpr size_t kPolicyReadChunk = 4096;
} // namespace

struct PolicyDaemon::Client {
    explicit Client(io::EventLoop& loop) : timer(loop) {}
    io::Fd fd;
    Kind kind;
    SocketRequestParser parser;
    std::string eval_data;
    std::string out;
    size_t out_off = 0;
    bool replying = false;
    std::shared_ptr<const Policy> policy; // snapshot used for this request
    std::shared_ptr<const SystemInfo> system;
    std::unique_ptr<AskProcess> ask;
    io::Timer timer;
    io::Watch watch; // destroyed first, while fd is still open
};

PolicyDaemon::PolicyDaemon(io::EventLoop& loop, DaemonConfig config)
    : loop_(loop), config_(std::move(config)) {}

PolicyDaemon::~PolicyDaemon() = default;

io::Fd PolicyDaemon::listen_on(const std::string& path) {
    io::Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) throw std::runtime_error("socket path too long: " + path);
    ::unlink(path.c_str()); // a stale socket from a previous run
    if (::bind(sock.get(), addr->get(), addr->size()) != 0)
        throw std::runtime_error("bind " + path + ": " + std::strerror(errno));
    ::chmod(path.c_str(), 0660);
    if (::listen(sock.get(), 128) != 0)
        throw std::runtime_error("listen " + path + ": " + std::strerror(errno));
    return sock;
}

void PolicyDaemon::start() {
    // Load and watch the policy before any socket accepts: a client that can connect
    // must never change a policy file in the window before the watches exist.
    CacheConfig cache_config;
    cache_config.paths = config_.paths;
    cache_config.system_info_file = config_.system_info_file;
    cache_config.qubesd_socket = config_.qubesd_socket;
    cache_config.watch = true;
    cache_ = std::make_unique<PolicyCache>(std::move(cache_config));
    if (cache_->watch_fd() >= 0)
        cache_watch_ = io::Watch(loop_, cache_->watch_fd(), EPOLLIN,
                                 [this](uint32_t) { cache_->on_watch_readable(); });
    listen_and_accept(policy_sock_, config_.socket_path, Kind::PolicySocket);
    struct Extra {
        const std::string& path;
        Listener& listener;
        Kind kind;
    };
    for (Extra e : {Extra{config_.eval_socket_path, eval_sock_, Kind::EvalSimple},
                    Extra{config_.gui_socket_path, gui_sock_, Kind::EvalGUI}}) {
        if (e.path.empty()) continue;
        try {
            listen_and_accept(e.listener, e.path, e.kind);
        } catch (const std::exception& ex) {
            // The services are optional extras; the main socket is what qrexec needs.
            QLOG("warning: {} (service disabled)", ex.what());
        }
    }
}

void PolicyDaemon::listen_and_accept(Listener& listener, const std::string& path, Kind kind) {
    listener.sock = listen_on(path);
    int fd = listener.sock.get();
    listener.watch =
        io::Watch(loop_, fd, EPOLLIN, [this, fd, kind](uint32_t) { accept_clients(fd, kind); });
}

void PolicyDaemon::accept_clients(int listen_fd, Kind kind) {
    for (;;) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) QLOG_ERRNO("accept");
            return;
        }
        io::Fd client_fd(fd);
        if (clients_.size() >= kMaxClients) {
            QLOG("too many clients, dropping a connection");
            continue;
        }
        auto client = std::make_unique<Client>(loop_);
        client->fd = std::move(client_fd);
        client->kind = kind;
        client->timer.start(config_.client_timeout, [this, fd] {
            QLOG("client timed out");
            drop(fd);
        });
        client->watch = io::Watch(loop_, fd, EPOLLIN, [this, fd](uint32_t events) {
            if (events & EPOLLOUT)
                on_client_writable(fd);
            else
                on_client_readable(fd, events);
        });
        clients_[fd] = std::move(client);
    }
}

void PolicyDaemon::on_client_readable(int fd, uint32_t events) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    if (c.replying || c.ask) {
        // The request is complete (waiting for the prompt): extra input is discarded,
        // a half-close stops the watch, a full hangup cancels the prompt.
        if (events & (EPOLLHUP | EPOLLERR)) {
            drop(fd);
            return;
        }
        char dummy[kPolicyReadChunk];
        ssize_t n = ::recv(fd, dummy, sizeof dummy, 0);
        if (n == 0)
            c.watch.modify(0);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            drop(fd);
        return;
    }
    char buf[kPolicyReadChunk];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0) {
            drop(fd);
            return;
        }
        bool eof = n == 0;
        if (c.kind == Kind::PolicySocket) {
            auto state = eof ? c.parser.finish() : c.parser.feed(std::string_view(buf, n));
            if (state == SocketRequestParser::State::Invalid) {
                QLOG("invalid policy request: {}; closing without reply", c.parser.error());
                drop(fd);
                return;
            }
            if (state == SocketRequestParser::State::Complete) {
                handle_request(c);
                return;
            }
        } else {
            if (!eof) c.eval_data.append(buf, static_cast<size_t>(n));
            auto nul = c.eval_data.find('\0');
            bool body_full =
                nul != std::string::npos && c.eval_data.size() - nul - 1 >= kMaxEvalBody;
            if (nul == std::string::npos && c.eval_data.size() > kMaxEvalHeader) {
                QLOG("policy.Eval* header too long; closing");
                drop(fd);
                return;
            }
            if (eof || body_full) {
                handle_eval(c);
                return;
            }
        }
        if (eof) {
            drop(fd);
            return;
        }
    }
}

void PolicyDaemon::handle_request(Client& c) {
    int fd = c.fd.get();
    const Request& request = c.parser.request();
    c.policy = cache_->policy();
    std::string error;
    c.system = cache_->fetch_system_info(&error);
    Decision decision;
    if (!c.system) {
        decision = deny_without_system_info(request, error);
    } else {
        decision = evaluate(*c.policy, *c.system, request);
    }
    if (decision.outcome == Outcome::Ask) {
        log_decision(decision);
        if (config_.ask_command.empty()) {
            QLOG("no ask command configured, denying");
            decision = answer_ask(decision, *c.system, std::nullopt);
        } else {
            auto pending = std::make_shared<Decision>(decision);
            c.ask = std::make_unique<AskProcess>(
                loop_, config_.ask_command, *decision.ask, *c.system,
                [this, fd, pending](std::optional<std::string> choice) {
                    auto it = clients_.find(fd);
                    if (it == clients_.end()) return;
                    Client& cl = *it->second;
                    Decision done = answer_ask(*pending, *cl.system, choice);
                    log_decision(done);
                    notify_if_needed(done, cl.system.get());
                    // Destroying the AskProcess from its own callback is deferred.
                    auto finished = std::shared_ptr<AskProcess>(cl.ask.release());
                    loop_.add_timer(std::chrono::milliseconds(0), [finished] {});
                    reply(fd, done.answer);
                });
            return;
        }
    }
    if (config_.log_decisions) log_decision(decision);
    notify_if_needed(decision, c.system.get());
    reply(fd, decision.answer);
}

void PolicyDaemon::handle_eval(Client& c) {
    int fd = c.fd.get();
    std::string_view name = c.kind == Kind::EvalGUI ? "policy.EvalGUI" : "policy.EvalSimple";
    std::string error;
    auto eval = parse_eval_request(c.eval_data, name, &error);
    if (!eval) {
        QLOG("invalid {} request: {}; closing without reply", name, error);
        drop(fd);
        return;
    }
    Request request;
    request.source = eval->source;
    request.intended_target = eval->target;
    request.service_and_arg = eval->service_queried;
    request.just_evaluate = true;
    request.assume_yes_for_ask = true;
    auto policy = cache_->policy();
    auto system = cache_->fetch_system_info(&error);
    bool allowed = false;
    if (!system) {
        QLOG("{}: {}", name, error);
    } else if (c.kind == Kind::EvalGUI && !([&] {
                   std::string tag = "guivm-" + eval->caller;
                   const Domain* s = system->find(eval->source);
                   const Domain* t = system->find(eval->target);
                   return s && t && s->has_tag(tag) && t->has_tag(tag);
               }())) {
        QLOG("{}: {} is not the GUI VM of {} and {}", name, eval->caller, eval->source,
             eval->target);
    } else {
        Decision d = evaluate(*policy, *system, request);
        allowed = d.allowed();
    }
    reply(fd, allowed ? "result=allow\n" : "result=deny\n");
}

void PolicyDaemon::reply(int fd, std::string text) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    c.replying = true;
    c.out = std::move(text);
    c.out_off = 0;
    on_client_writable(fd);
}

void PolicyDaemon::on_client_writable(int fd) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    if (!c.replying) return;
    while (c.out_off < c.out.size()) {
        ssize_t n = ::send(fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c.watch.modify(EPOLLOUT);
            return;
        }
        if (n < 0) break; // the client went away
        c.out_off += static_cast<size_t>(n);
    }
    drop(fd);
}

void PolicyDaemon::drop(int fd) {
    clients_.erase(fd); // its watch, timer, prompt and fd end with it
}

} // namespace qrexec::policy
