#include "stream/engine.h"
#include "stream/byte_buffer.h"

#include "io/event_loop.h"
#include "io/log.h"
#include "io/trace.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

namespace qrexec::stream {

using namespace qrexec::protocol;

void block_sigusr1() {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
}

void filter_control_chars(std::span<std::byte> data) {
    for (auto& b : data) {
        auto c = static_cast<unsigned char>(b);
        bool keep = (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\n' || c == '\r' || c == '\b' ||
                    c == '\a';
        if (!keep) b = std::byte{'_'};
    }
}

std::optional<uint32_t> handshake_data_channel(transport::Channel& channel, bool send_first,
                                               int timeout_ms) {
    auto hello = encode_frame(MSG_HELLO, encode_hello(kProtocolVersion));
    if (send_first && !channel.send_all(hello, timeout_ms)) {
        QLOG("Failed to send HELLO to the peer");
        return std::nullopt;
    }
    std::array<std::byte, kHeaderSize + 4> reply{};
    if (!channel.recv_all(std::span(reply).first(kHeaderSize), timeout_ms)) {
        QLOG("Failed to read the peer's HELLO header");
        return std::nullopt;
    }
    auto header = decode_header(std::span(reply).first<kHeaderSize>());
    if (!is_hello_header(header)) {
        QLOG("Invalid HELLO from the peer: type 0x{:x}, len {}", header.type, header.len);
        return std::nullopt;
    }
    if (!channel.recv_all(std::span(reply).subspan(kHeaderSize), timeout_ms)) {
        QLOG("Failed to read the peer's HELLO");
        return std::nullopt;
    }
    auto checked = check_hello(header, std::span(reply).subspan(kHeaderSize), kVchanHello);
    if (!checked.version) {
        QLOG("{} from the peer", checked.error);
        return std::nullopt;
    }
    uint32_t version = *checked.version;
    if (!send_first && !channel.send_all(hello, timeout_ms)) {
        QLOG("Failed to send HELLO to the peer");
        return std::nullopt;
    }
    return version;
}

namespace {

// One direction of a local fd that can be ended on its own.
struct Direction {
    int fd = -1;
    CloseMethod method = CloseMethod::Close;
    bool open() const { return fd >= 0; }
};

class Engine {
  public:
    Engine(transport::Channel& channel, EngineConfig config, io::Child* child)
        : channel_(channel), config_(std::move(config)), child_(child),
          max_chunk_(max_chunk_for_version(config_.version)),
          is_service_(config_.role == Role::Service) {
        input_ = {config_.input.fd, config_.input.close};
        output_ = {config_.output.fd, config_.output.close};
        error_ = {config_.error.fd, config_.error.close};
        for (int fd : {input_.fd, output_.fd, error_.fd})
            if (fd >= 0) make_nonblocking(fd);
        // Both allocated for overwrite: pages are touched only as data arrives.
        recv_buf_.resize_for_overwrite(2 * (kMaxDataChunkV3 + kHeaderSize));
        send_buf_.reserve(kMaxDataChunkV3 + kHeaderSize);
        if (config_.single_socket_on_sigusr1 && config_.single_socket_event_fd < 0)
            sigusr1_fd_ = io::make_signal_fd({SIGUSR1});
        tracing_ = !config_.trace_tokens.empty() && io::trace_on();
    }
    ~Engine() { close_everything(); }

    EngineResult run();

  private:
    void make_nonblocking(int fd);
    void end_direction(Direction& dir, int how);
    void close_everything();

    void on_fd_event(int fd, uint32_t events);
    void on_channel_readable();
    void process_frames();
    bool dispatch(Header header, std::span<std::byte> payload);
    void deliver(Direction& target, std::span<std::byte> data);
    void flush_pending();

    void queue_frame(uint32_t type, std::span<const std::byte> payload);
    void flush_send();
    bool send_idle() const { return send_off_ >= send_buf_.size(); }
    void read_local(Direction& dir, bool is_error_stream);
    void send_eof_once(uint32_t type);
    void queue_exit_code(int code);

    // Stage trace: each stage at most once per call.
    enum TraceStage { kFirstByteOut, kFirstByteIn, kEofOut, kEofIn, kExitCode, kStageCount };
    void trace_once(TraceStage stage, std::string_view extra = {});

    void on_child_exit();
    void on_sigusr1();
    bool take_switch_signal();
    bool switch_before_output_eof();
    void switch_to_single_socket();
    bool done() const;
    bool peer_gone() const;
    bool complete_frame_buffered() const;
    bool update_interest();
    void fatal(std::string_view why) {
        QLOG("{}", why);
        result_.protocol_error = true;
        finished_ = true;
    }

    transport::Channel& channel_;
    EngineConfig config_;
    io::Child* child_;
    size_t max_chunk_;
    bool is_service_;
    io::EventLoop loop_;
    std::map<int, int> saved_flags_; // fds whose O_NONBLOCK we set and must restore

    Direction input_, output_, error_;
    io::Fd sigusr1_fd_;
    bool switched_to_single_socket_ = false;
    io::Fd reserved_output_; // `output` after its write side was shut down

    ByteBuffer recv_buf_; // fixed size; [recv_start_, recv_end_) is buffered
    size_t recv_start_ = 0, recv_end_ = 0;
    bool channel_eof_ = false;
    bool channel_write_failed_ = false;

    ByteBuffer send_buf_;
    size_t send_off_ = 0;

    // Received data not yet accepted by the local fd (S1: at most one chunk).
    std::vector<std::byte> pending_;
    size_t pending_off_ = 0;
    Direction* pending_target_ = nullptr;

    bool main_eof_sent_ = false; // service: STDOUT EOF; client: STDIN EOF
    bool stderr_eof_sent_ = false;
    bool exit_code_queued_ = false;
    bool finished_ = false;
    EngineResult result_;
    std::map<int, uint32_t> registered_;
    bool tracing_ = false;
    bool traced_[kStageCount] = {};
    std::vector<std::pair<int, uint32_t>> always_ready_; // fds epoll refuses (regular files)
};

void Engine::make_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK)) return;
    // Inherited fds are shared with other processes: restore their flags when done.
    saved_flags_[fd] = flags;
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void Engine::end_direction(Direction& dir, int how) {
    if (!dir.open()) return;
    int fd = dir.fd;
    dir.fd = -1;
    if (pending_target_ == &dir) {
        pending_.clear();
        pending_off_ = 0;
        pending_target_ = nullptr;
    }
    bool still_used = input_.fd == fd || output_.fd == fd || error_.fd == fd;
    if (dir.method == CloseMethod::Shutdown) ::shutdown(fd, how);
    if (still_used) return;
    if (registered_.erase(fd)) loop_.unwatch(fd);
    if (&dir == &output_ && config_.single_socket_on_sigusr1 && !switched_to_single_socket_ &&
        dir.method == CloseMethod::Shutdown) {
        // Only shut down: a later SIGUSR1 still switches to reading the program's
        // output from this socket (S5, also after STDIN EOF).
        reserved_output_ = io::Fd(fd);
        return;
    }
    std::erase_if(always_ready_, [fd](auto& entry) { return entry.first == fd; });
    if (auto it = saved_flags_.find(fd); it != saved_flags_.end()) {
        fcntl(fd, F_SETFL, it->second);
        saved_flags_.erase(it);
    }
    ::close(fd);
}

void Engine::close_everything() {
    end_direction(input_, SHUT_RD);
    end_direction(output_, SHUT_WR);
    end_direction(error_, SHUT_RD);
}

// ---------------------------------------------------------------- receive

void Engine::on_channel_readable() {
    if (recv_end_ == recv_buf_.size()) {
        std::memmove(recv_buf_.data(), recv_buf_.data() + recv_start_, recv_end_ - recv_start_);
        recv_end_ -= recv_start_;
        recv_start_ = 0;
    }
    ssize_t n = channel_.read(recv_buf_.span().subspan(recv_end_));
    if (n > 0)
        recv_end_ += static_cast<size_t>(n);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        channel_eof_ = true;
    process_frames();
}

void Engine::process_frames() {
    while (!finished_ && pending_.empty()) {
        auto frame =
            next_frame(recv_buf_.span().subspan(recv_start_, recv_end_ - recv_start_), max_chunk_);
        if (frame.status == FrameStatus::TooLong) {
            fatal(fmt::format("Too big data chunk received: {} bytes (type 0x{:x})",
                              frame.header->len, frame.header->type));
            return;
        }
        if (frame.status != FrameStatus::Ready) break;
        recv_start_ += frame.size;
        if (!dispatch(*frame.header, frame.untrusted_payload)) return;
    }
    if (recv_start_ == recv_end_) recv_start_ = recv_end_ = 0;
}

bool Engine::dispatch(Header header, std::span<std::byte> payload) {
    uint32_t type = header.type;
    if (is_service_) {
        if (type == MSG_DATA_STDOUT) {
            QLOG("received MSG_DATA_STDOUT on the service side, treating it as stdin");
            type = MSG_DATA_STDIN;
        }
        if (type == MSG_DATA_STDIN) {
            if (!payload.empty()) {
                if (tracing_) trace_once(kFirstByteIn);
                deliver(output_, payload);
            } else {
                if (tracing_) trace_once(kEofIn);
                end_direction(output_, SHUT_WR);
                if (config_.exit_on_client_eof && !exit_code_queued_) {
                    send_eof_once(MSG_DATA_STDOUT);
                    end_direction(input_, SHUT_RD);
                    queue_exit_code(0);
                }
            }
            return true;
        }
        if (type == MSG_DATA_STDERR || type == MSG_DATA_EXIT_CODE) {
            QLOG("ignoring {} received on the service side", msg_type_name(type));
            return true;
        }
        fatal(fmt::format("unexpected message type 0x{:x} on the data channel", type));
        return false;
    }
    if (type == MSG_DATA_STDIN) {
        QLOG("received MSG_DATA_STDIN on the client side, treating it as stdout");
        type = MSG_DATA_STDOUT;
    }
    switch (type) {
    case MSG_DATA_STDOUT:
        if (payload.empty()) {
            if (tracing_) trace_once(kEofIn);
            end_direction(output_, SHUT_WR);
        } else {
            if (tracing_) trace_once(kFirstByteIn);
            if (config_.filter_stdout) filter_control_chars(payload);
            deliver(output_, payload);
        }
        return true;
    case MSG_DATA_STDERR:
        // STDERR EOF is ignored: our fd 2 stays open.
        if (!payload.empty()) {
            if (config_.filter_stderr) filter_control_chars(payload);
            deliver(error_, payload);
        }
        return true;
    case MSG_DATA_EXIT_CODE:
        if (!result_.exit_code) {
            result_.exit_code = decode_exit_code(payload);
            if (tracing_) trace_once(kExitCode, fmt::format("code={}", *result_.exit_code));
        }
        // The service is done: our input ends here (§5.3).
        send_eof_once(MSG_DATA_STDIN);
        end_direction(input_, SHUT_RD);
        return true;
    default:
        fatal(fmt::format("unexpected message type 0x{:x} on the data channel", type));
        return false;
    }
}

void Engine::deliver(Direction& target, std::span<std::byte> data) {
    if (!target.open()) return; // the reader went away: discard (§5.6)
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(target.fd, data.data() + off, data.size() - off);
        if (n > 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pending_.assign(data.begin() + static_cast<long>(off), data.end());
            pending_off_ = 0;
            pending_target_ = &target;
            return;
        }
        // EPIPE / ECONNRESET: the reader closed its input; the call continues.
        end_direction(target, SHUT_WR);
        return;
    }
}

void Engine::flush_pending() {
    if (!pending_target_) return;
    Direction& target = *pending_target_;
    while (pending_off_ < pending_.size()) {
        ssize_t n =
            ::write(target.fd, pending_.data() + pending_off_, pending_.size() - pending_off_);
        if (n > 0) {
            pending_off_ += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        // EPIPE / ECONNRESET: the reader left; the rest is discarded (§5.6), and
        // the messages received behind it still count (EOFs, the exit code): no
        // more bytes may arrive on the vchan to get them processed otherwise.
        end_direction(target, SHUT_WR);
        break;
    }
    pending_.clear();
    pending_off_ = 0;
    pending_target_ = nullptr;
    process_frames();
}

// ---------------------------------------------------------------- send

void Engine::queue_frame(uint32_t type, std::span<const std::byte> payload) {
    if (channel_write_failed_) return;
    if (send_idle()) {
        send_buf_.clear();
        send_off_ = 0;
    }
    auto header = encode_header({type, static_cast<uint32_t>(payload.size())});
    send_buf_.append(header);
    send_buf_.append(payload);
    flush_send();
}

void Engine::flush_send() {
    while (send_off_ < send_buf_.size()) {
        iovec iov{send_buf_.data() + send_off_, send_buf_.size() - send_off_};
        ssize_t n = channel_.writev(&iov, 1);
        if (n > 0) {
            send_off_ += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) return;
        channel_write_failed_ = true;
        send_buf_.clear();
        send_off_ = 0;
        if (is_service_) {
            fatal("Failed to write to the data vchan");
        } else {
            // Stop sending but keep reading: a queued exit code must not be lost (S4).
            end_direction(input_, SHUT_RD);
        }
        return;
    }
    send_buf_.clear();
    send_off_ = 0;
}

void Engine::send_eof_once(uint32_t type) {
    bool& sent = type == MSG_DATA_STDERR ? stderr_eof_sent_ : main_eof_sent_;
    if (sent) return;
    sent = true;
    if (tracing_ && type != MSG_DATA_STDERR) trace_once(kEofOut);
    queue_frame(type, {});
}

void Engine::queue_exit_code(int code) {
    result_.exit_code = code;
    exit_code_queued_ = true;
    if (tracing_) trace_once(kExitCode, fmt::format("code={}", code));
    queue_frame(MSG_DATA_EXIT_CODE, encode_exit_code(code));
}

void Engine::read_local(Direction& dir, bool is_error_stream) {
    uint32_t type = is_error_stream
                        ? uint32_t{MSG_DATA_STDERR}
                        : (is_service_ ? uint32_t{MSG_DATA_STDOUT} : uint32_t{MSG_DATA_STDIN});
    // Build the frame in place: the payload is read right behind its header so
    // header and payload leave in one write.
    send_buf_.resize_for_overwrite(kHeaderSize + max_chunk_);
    send_off_ = 0;
    ssize_t n;
    do {
        n = ::read(dir.fd, send_buf_.data() + kHeaderSize, max_chunk_);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
        send_buf_.clear();
        return;
    }
    if (n <= 0) {
        send_buf_.clear();
        if (n == 0 && &dir == &input_ && switch_before_output_eof()) return;
        if (n < 0 && errno != ECONNRESET) QLOG_ERRNO("read from local fd {}", dir.fd);
        end_direction(dir, SHUT_RD);
        send_eof_once(type);
        if (is_service_ && !is_error_stream && config_.exit_on_service_eof && !exit_code_queued_) {
            end_direction(output_, SHUT_WR);
            queue_exit_code(0);
        }
        return;
    }
    if (tracing_ && !is_error_stream) trace_once(kFirstByteOut);
    if (is_error_stream && config_.stderr_copy)
        config_.stderr_copy(send_buf_.span().subspan(kHeaderSize, static_cast<size_t>(n)));
    auto header = encode_header({type, static_cast<uint32_t>(n)});
    std::memcpy(send_buf_.data(), header.data(), header.size());
    send_buf_.resize_for_overwrite(kHeaderSize + static_cast<size_t>(n));
    flush_send();
}

// ---------------------------------------------------------------- state

void Engine::trace_once(TraceStage stage, std::string_view extra) {
    static constexpr std::string_view kNames[kStageCount] = {"first-byte-out", "first-byte-in",
                                                             "eof-out", "eof-in", "exit-code"};
    if (traced_[stage]) return;
    traced_[stage] = true;
    io::trace_line(kNames[stage], extra.empty() ? config_.trace_tokens
                                                : config_.trace_tokens + " " + std::string(extra));
}

void Engine::on_child_exit() {
    if (!child_ || result_.child_status) return;
    result_.child_status = child_->try_wait();
    if (result_.child_status && child_->exit_fd() >= 0) loop_.unwatch(child_->exit_fd());
    if (result_.child_status && is_service_) {
        // The program is gone: nothing more is written to its stdin (§5.5 step 1).
        end_direction(output_, SHUT_WR);
    }
}

// Consumes the pending switch signal(s); false when there was none.
bool Engine::take_switch_signal() {
    if (sigusr1_fd_) return !io::read_signals(sigusr1_fd_.get()).empty();
    uint64_t count = 0;
    return ::read(config_.single_socket_event_fd, &count, sizeof count) ==
           static_cast<ssize_t>(sizeof count);
}

// The program's output ended: if it asked for the switch before closing it,
// switch now rather than lose what it writes to the shared socket (S5). The
// signal was sent before the close, so it is pending by now (or, in the agent,
// still being routed: collect_pending_switch waits for that).
bool Engine::switch_before_output_eof() {
    if (!is_service_ || !config_.single_socket_on_sigusr1 || switched_to_single_socket_)
        return false;
    if (config_.collect_pending_switch) config_.collect_pending_switch();
    if (!take_switch_signal()) return false;
    switch_to_single_socket();
    return true;
}

void Engine::on_sigusr1() {
    if (!take_switch_signal()) return;
    switch_to_single_socket();
}

void Engine::switch_to_single_socket() {
    if (switched_to_single_socket_) return; // later SIGUSR1s have no effect (S5)
    switched_to_single_socket_ = true;
    // From now on the program's output is read from the socket that carries its
    // input (config.output, which stays ours even after its write side was shut).
    int shared = output_.open() ? output_.fd : reserved_output_.get();
    if (shared < 0 || !input_.open()) return;
    if (shared == reserved_output_.get()) (void)reserved_output_.release(); // now input_'s
    int old = input_.fd;
    ::shutdown(old, SHUT_RD);
    input_.fd = -1;
    if (old != output_.fd && old != error_.fd) {
        if (registered_.erase(old)) loop_.unwatch(old);
        ::close(old);
    }
    input_ = {shared, CloseMethod::Shutdown};
}

bool Engine::done() const {
    if (finished_) return true;
    if (is_service_) return exit_code_queued_ && (send_idle() || channel_write_failed_);
    return result_.exit_code.has_value() && pending_.empty() && !complete_frame_buffered();
}

bool Engine::peer_gone() const {
    // Every complete message still buffered is processed first (S4); a trailing
    // partial one can never complete once the peer has closed.
    return channel_eof_ && !complete_frame_buffered() && pending_.empty();
}

bool Engine::complete_frame_buffered() const {
    auto frame = next_frame(
        std::span<const std::byte>(recv_buf_.span()).subspan(recv_start_, recv_end_ - recv_start_),
        max_chunk_);
    return frame.status == FrameStatus::Ready;
}

// Registers what each fd should wait for; returns true if some fd is always
// ready (epoll cannot watch regular files) so the loop must not block.
bool Engine::update_interest() {
    std::map<int, uint32_t> want;
    bool reading_input = send_idle() && !channel_write_failed_ && !exit_code_queued_ &&
                         (is_service_ || !result_.exit_code);
    if (reading_input) {
        if (input_.open()) want[input_.fd] |= EPOLLIN;
        if (is_service_ && error_.open()) want[error_.fd] |= EPOLLIN;
    }
    if (pending_target_) want[pending_target_->fd] |= EPOLLOUT;
    // Watching with no events still reports EPOLLHUP/EPOLLERR: the reader of our
    // output going away. Not for a shared socket, where HUP would spin while we
    // are not reading it.
    if (output_.open() && output_.fd != input_.fd) want[output_.fd] |= 0;
    uint32_t chan = 0;
    if (pending_.empty() && !channel_eof_) chan |= EPOLLIN;
    if (!send_idle()) chan |= EPOLLOUT;
    if (chan) want[channel_.fd()] = chan;

    for (auto it = registered_.begin(); it != registered_.end();) {
        if (!want.count(it->first)) {
            loop_.unwatch(it->first);
            it = registered_.erase(it);
        } else {
            ++it;
        }
    }
    bool spin = false;
    for (auto [fd, events] : want) {
        auto ready = std::find_if(always_ready_.begin(), always_ready_.end(),
                                  [fd = fd](auto& e) { return e.first == fd; });
        if (ready != always_ready_.end()) {
            ready->second = events;
            spin = spin || events != 0;
            continue;
        }
        auto it = registered_.find(fd);
        if (it != registered_.end()) {
            if (it->second != events) {
                loop_.modify(fd, events);
                it->second = events;
            }
            continue;
        }
        if (loop_.try_watch(fd, events, [this, fd = fd](uint32_t ev) { on_fd_event(fd, ev); })) {
            registered_[fd] = events;
        } else {
            always_ready_.push_back({fd, events});
            spin = spin || events != 0;
        }
    }
    return spin;
}

void Engine::on_fd_event(int fd, uint32_t events) {
    if (fd == channel_.fd()) {
        if (events & EPOLLOUT) flush_send();
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_channel_readable();
        return;
    }
    if (pending_target_ && pending_target_->fd == fd && (events & (EPOLLOUT | EPOLLERR)))
        flush_pending();
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && send_idle()) {
        if (input_.fd == fd)
            read_local(input_, false);
        else if (is_service_ && error_.fd == fd)
            read_local(error_, true);
    }
    // The reader of our output went away (§5.5 step 7).
    if ((events & (EPOLLHUP | EPOLLERR)) && output_.fd == fd && input_.fd != fd &&
        !(events & EPOLLIN))
        end_direction(output_, SHUT_WR);
}

EngineResult Engine::run() {
    if (is_service_ && !error_.open()) send_eof_once(MSG_DATA_STDERR);
    if (!config_.prefix_data.empty()) {
        auto data = as_bytes(config_.prefix_data);
        uint32_t type = is_service_ ? MSG_DATA_STDOUT : MSG_DATA_STDIN;
        for (size_t off = 0; off < data.size(); off += max_chunk_)
            queue_frame(type, data.subspan(off, std::min(max_chunk_, data.size() - off)));
    }
    if (child_ && child_->exit_fd() >= 0)
        loop_.watch(child_->exit_fd(), EPOLLIN, [this](uint32_t) { on_child_exit(); });
    int switch_fd = sigusr1_fd_
                        ? sigusr1_fd_.get()
                        : (config_.single_socket_on_sigusr1 ? config_.single_socket_event_fd : -1);
    if (switch_fd >= 0) loop_.watch(switch_fd, EPOLLIN, [this](uint32_t) { on_sigusr1(); });

    for (;;) {
        if (child_ && !result_.child_status && child_->exit_fd() < 0) on_child_exit();
        if (done()) break;
        if (is_service_ && !exit_code_queued_) {
            // §5.4: stdout and stderr ended, the program's stdin closed, the program exited.
            bool child_gone = !child_ || result_.child_status.has_value();
            if (!input_.open() && !error_.open() && !output_.open() && child_gone) {
                queue_exit_code(result_.child_status.value_or(0));
                continue;
            }
        }
        if (peer_gone()) {
            QLOG("vchan connection closed early");
            break;
        }
        bool spin = update_interest();
        loop_.run_once(std::chrono::milliseconds(spin ? 0 : 10000));
        for (auto [fd, events] : std::vector(always_ready_))
            if (events) on_fd_event(fd, events);
    }
    close_everything();
    if (child_ && !result_.child_status) result_.child_status = child_->wait();
    return result_;
}

} // namespace

EngineResult run_engine(transport::Channel& channel, EngineConfig config, io::Child* child) {
    Engine engine(channel, std::move(config), child);
    return engine.run();
}

} // namespace qrexec::stream
