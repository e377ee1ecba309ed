// Drives the engine over a real socketpair "vchan" with a scripted peer.
#include "io/fd.h"
#include "io/process.h"
#include "protocol/messages.h"
#include "stream/engine.h"
#include "transport/socket_backend.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace qrexec;
using namespace qrexec::protocol;

namespace {

struct Frame {
    uint32_t type;
    std::string data;
};

void send_frame(int fd, uint32_t type, std::string_view data) {
    auto frame = encode_frame(type, as_bytes(data));
    ASSERT_TRUE(io::write_all(fd, frame));
}

std::vector<Frame> read_frames_until_exit(int fd) {
    std::vector<Frame> frames;
    for (;;) {
        std::array<std::byte, 8> hdr{};
        if (io::read_all(fd, hdr) != 8) break;
        auto h = decode_header(hdr);
        std::string data(h.len, '\0');
        if (io::read_all(fd, std::as_writable_bytes(std::span(data))) !=
            static_cast<ssize_t>(h.len))
            break;
        frames.push_back({h.type, data});
        if (h.type == MSG_DATA_EXIT_CODE) break;
    }
    return frames;
}

std::string joined(const std::vector<Frame>& frames, uint32_t type) {
    std::string out;
    for (auto& f : frames)
        if (f.type == type) out += f.data;
    return out;
}

// Spawns /bin/sh -c script with socketpair stdin/stdout and a pipe stderr.
struct Service {
    io::Child child;
    stream::EngineConfig config;
};

Service spawn_service(const std::string& script) {
    auto in = io::make_socketpair();
    auto out = io::make_socketpair();
    auto err = io::make_pipe();
    auto child = io::spawn({in.second.get(), out.second.get(), err.second.get()}, [&] {
        io::close_fds_from(3);
        execl("/bin/sh", "sh", "-c", script.c_str(), nullptr);
        return 127;
    });
    stream::EngineConfig config;
    config.role = stream::Role::Service;
    config.output = {in.first.release(), stream::CloseMethod::Shutdown};
    config.input = {out.first.release(), stream::CloseMethod::Shutdown};
    config.error = {err.first.release(), stream::CloseMethod::Close};
    return {std::move(child), std::move(config)};
}

} // namespace

TEST(Engine, ServiceEchoesStdinAndReportsExitCodeLast) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto service = spawn_service("cat; echo err >&2; exit 3");
    int peer = pair.second.get();
    std::thread peer_thread([&] {
        send_frame(peer, MSG_DATA_STDIN, "hello ");
        send_frame(peer, MSG_DATA_STDIN, "world");
        send_frame(peer, MSG_DATA_STDIN, "");
    });
    auto result = stream::run_engine(*channel, std::move(service.config), &service.child);
    peer_thread.join();
    auto frames = read_frames_until_exit(peer);
    ASSERT_FALSE(frames.empty());
    EXPECT_EQ(frames.back().type, MSG_DATA_EXIT_CODE);
    EXPECT_EQ(decode_exit_code(as_bytes(frames.back().data)), 3);
    EXPECT_EQ(joined(frames, MSG_DATA_STDOUT), "hello world");
    EXPECT_EQ(joined(frames, MSG_DATA_STDERR), "err\n");
    int stdout_eofs = 0, stderr_eofs = 0;
    for (auto& f : frames) {
        stdout_eofs += f.type == MSG_DATA_STDOUT && f.data.empty();
        stderr_eofs += f.type == MSG_DATA_STDERR && f.data.empty();
    }
    EXPECT_EQ(stdout_eofs, 1);
    EXPECT_EQ(stderr_eofs, 1);
    EXPECT_EQ(result.exit_code, 3);
}

TEST(Engine, ServiceWithoutStderrSendsEmptyStderrFirst) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto service = spawn_service("echo out");
    close(service.config.error.fd);
    service.config.error = {};
    auto result = stream::run_engine(*channel, std::move(service.config), &service.child);
    // Our STDIN EOF never came, but the child exited: its stdin is closed at exit.
    auto frames = read_frames_until_exit(pair.second.get());
    ASSERT_GE(frames.size(), 3u);
    EXPECT_EQ(frames.front().type, MSG_DATA_STDERR);
    EXPECT_TRUE(frames.front().data.empty());
    EXPECT_EQ(joined(frames, MSG_DATA_STDOUT), "out\n");
    EXPECT_EQ(result.exit_code, 0);
}

TEST(Engine, ServiceRejectsOversizedChunk) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto service = spawn_service("cat >/dev/null");
    service.config.version = 2;
    auto header = encode_header({MSG_DATA_STDIN, 5000});
    ASSERT_TRUE(io::write_all(pair.second.get(), header));
    auto result = stream::run_engine(*channel, std::move(service.config), &service.child);
    EXPECT_TRUE(result.protocol_error);
    EXPECT_FALSE(result.exit_code.has_value());
}

TEST(Engine, ClientReturnsRemoteExitCodeAndWritesStdout) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto out = io::make_pipe();
    auto in = io::make_pipe();
    in.second.reset(); // our local input is at EOF at once
    int peer = pair.second.get();
    send_frame(peer, MSG_DATA_STDERR, "");
    send_frame(peer, MSG_DATA_STDOUT, "data");
    send_frame(peer, MSG_DATA_STDOUT, "");
    auto code = encode_exit_code(42);
    auto frame = encode_frame(MSG_DATA_EXIT_CODE, code);
    ASSERT_TRUE(io::write_all(peer, frame));
    stream::EngineConfig config;
    config.role = stream::Role::Client;
    config.input = {in.first.release(), stream::CloseMethod::Close};
    config.output = {out.second.release(), stream::CloseMethod::Close};
    auto result = stream::run_engine(*channel, std::move(config), nullptr);
    EXPECT_EQ(result.exit_code, 42);
    char buf[16] = {};
    EXPECT_EQ(read(out.first.get(), buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "data");
    channel.reset(); // the peer reads to EOF
    auto frames = read_frames_until_exit(peer);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].type, MSG_DATA_STDIN);
    EXPECT_TRUE(frames[0].data.empty());
}

TEST(Engine, ClientWithoutExitCodeReportsNone) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto out = io::make_pipe();
    auto in = io::make_pipe();
    send_frame(pair.second.get(), MSG_DATA_STDOUT, "x");
    pair.second.reset();
    stream::EngineConfig config;
    config.role = stream::Role::Client;
    config.input = {in.first.release(), stream::CloseMethod::Close};
    config.output = {out.second.release(), stream::CloseMethod::Close};
    auto result = stream::run_engine(*channel, std::move(config), nullptr);
    EXPECT_FALSE(result.exit_code.has_value());
}

TEST(Engine, FilterReplacesControlBytes) {
    std::string text = "a\x1b[31mb\tc\n\x7f\xc3\xa9";
    auto bytes = std::as_writable_bytes(std::span(text));
    stream::filter_control_chars(bytes);
    EXPECT_EQ(text, "a_[31mb\tc\n___");
}

// S5: SIGUSR1 still switches output reading to the stdin socket when STDIN EOF
// was delivered (and the socket shut down for writing) before the signal.
TEST(Engine, SingleSocketSwitchAfterStdinEof) {
    stream::block_sigusr1(); // before any thread exists, as the handler does
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto service = spawn_service("cat >/dev/null; kill -USR1 $PPID; echo after-eof >&0");
    service.config.single_socket_on_sigusr1 = true;
    send_frame(pair.second.get(), MSG_DATA_STDIN, "data");
    send_frame(pair.second.get(), MSG_DATA_STDIN, "");
    auto result = stream::run_engine(*channel, std::move(service.config), &service.child);
    auto frames = read_frames_until_exit(pair.second.get());
    EXPECT_EQ(joined(frames, MSG_DATA_STDOUT), "after-eof\n");
    EXPECT_EQ(result.exit_code, 0);
}

TEST(Engine, PartialFrameBeforePeerCloseEndsTheCall) {
    // Found by fuzz/data_stream_fuzz: a header announcing more bytes than ever
    // come, then the peer closes. The call must end (it used to wait forever).
    for (auto role : {stream::Role::Client, stream::Role::Service}) {
        auto pair = io::make_socketpair();
        auto header = encode_header({MSG_DATA_STDOUT, 32764});
        ASSERT_TRUE(io::write_all(pair.second.get(), header));
        ::shutdown(pair.second.get(), SHUT_WR);
        // Run the engine in a child so a hang is a timeout here, not a stuck test.
        auto child = io::spawn({}, [&]() -> int {
            auto channel = transport::make_socket_channel(std::move(pair.first));
            auto in = io::make_pipe();
            in.second.reset();
            stream::EngineConfig config;
            config.role = role;
            config.input = {in.first.release(), stream::CloseMethod::Close};
            config.output = {::open("/dev/null", O_WRONLY | O_CLOEXEC), stream::CloseMethod::Close};
            auto result = stream::run_engine(*channel, std::move(config), nullptr);
            return result.exit_code ? 1 : 0;
        });
        bool ended = io::wait_readable(child.exit_fd(), 10000);
        if (!ended) ::kill(child.pid(), SIGKILL);
        EXPECT_TRUE(ended);
        EXPECT_EQ(child.wait(), ended ? 0 : 128 + SIGKILL);
    }
}

TEST(Engine, StderrCopyGetsTheServiceStderr) {
    auto pair = io::make_socketpair();
    auto channel = transport::make_socket_channel(std::move(pair.first));
    auto service = spawn_service("echo to-log >&2; echo out");
    std::string copied;
    service.config.stderr_copy = [&](std::span<const std::byte> data) {
        copied.append(reinterpret_cast<const char*>(data.data()), data.size());
    };
    send_frame(pair.second.get(), MSG_DATA_STDIN, "");
    auto result = stream::run_engine(*channel, std::move(service.config), &service.child);
    EXPECT_EQ(result.exit_code, 0);
    EXPECT_EQ(copied, "to-log\n");
    auto frames = read_frames_until_exit(pair.second.get());
    EXPECT_EQ(joined(frames, MSG_DATA_STDERR), "to-log\n"); // still forwarded
}

// The local program exits without reading while the engine holds its output
// back for it (a full socket): the failed write must not strand the messages
// already received behind it. The call ended only when the peer gave up and
// closed (qrexec-client-vm hung with `/bin/true` as its local program).
TEST(Engine, ClientFinishesWhenTheReaderLeavesWhileOutputIsHeldBack) {
    // One chunk, so every message after it is already in the engine's buffer
    // when the write blocks: nothing more arrives on the vchan to wake it.
    constexpr size_t kOutput = 40000;
    signal(SIGPIPE, SIG_IGN); // as in every program of ours: writes fail with EPIPE
    for (int round = 0; round < 3; ++round) {
        SCOPED_TRACE(round);
        auto pair = io::make_socketpair();
        auto channel = transport::make_socket_channel(std::move(pair.first));
        auto program = io::make_socketpair(); // .second: the program's stdin
        int small = 4096;
        ASSERT_EQ(setsockopt(program.first.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
        auto in = io::make_pipe();
        in.second.reset(); // the program wrote nothing
        int peer = pair.second.get();
        std::atomic<bool> engine_done{false};
        std::atomic<bool> peer_gave_up{false};
        std::thread service([&] {
            send_frame(peer, MSG_DATA_STDOUT, std::string(kOutput, 'z'));
            send_frame(peer, MSG_DATA_STDOUT, "");
            send_frame(peer, MSG_DATA_STDERR, "");
            auto frame = encode_frame(MSG_DATA_EXIT_CODE, encode_exit_code(7));
            ASSERT_TRUE(io::write_all(peer, frame));
            // Keep the vchan open, as a live service does, until the engine ends
            // (bounded: a hung engine must not hang the test).
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (!engine_done && std::chrono::steady_clock::now() < deadline) {
                pollfd p{peer, POLLIN, 0};
                ::poll(&p, 1, 50); // reads the engine's STDIN EOF and its close
                char sink[4096];
                if ((p.revents & POLLIN) && ::read(peer, sink, sizeof sink) == 0) break;
            }
            peer_gave_up = !engine_done;
            ::shutdown(peer, SHUT_RDWR);
        });
        std::thread reader([&] {
            // The engine has started writing and its socket is full: leave.
            for (int queued = 0; queued < 2048;) {
                pollfd p{program.second.get(), POLLIN, 0};
                ASSERT_GT(::poll(&p, 1, 20000), 0);
                ASSERT_EQ(::ioctl(program.second.get(), SIOCINQ, &queued), 0);
            }
            program.second.reset();
        });
        stream::EngineConfig config;
        config.role = stream::Role::Client;
        config.input = {in.first.release(), stream::CloseMethod::Close};
        config.output = {program.first.release(), stream::CloseMethod::Shutdown};
        auto result = stream::run_engine(*channel, std::move(config), nullptr);
        engine_done = true;
        reader.join();
        service.join();
        EXPECT_FALSE(peer_gave_up) << "the engine waited for the peer to close";
        EXPECT_EQ(result.exit_code, 7);
    }
}
