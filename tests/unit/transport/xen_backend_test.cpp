// The Xen backend's own logic (xenstore conventions, the pump, EOF and flush
// on close, flow control through small rings), over the libxenvchan stand-in
// of tests/xen_standin. Built only with -DQREXEC_VCHAN=xen -DQREXEC_XEN_STANDIN=ON.
#if QREXEC_XEN_STANDIN

#include "transport/xen_backend.h"

#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

using namespace qrexec::transport;

// Named, not anonymous: the TEST_F classes derive from the fixture.
namespace xen_standin_fixture {

class XenStandin : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/qrexec-xen-XXXXXX";
        dir_ = mkdtemp(tmpl);
        setenv("VCHAN_SOCKET_DIR", dir_.c_str(), 1);
        setenv("VCHAN_DOMAIN", "1", 1);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string socket_file(int server, int client, int port) const {
        return dir_ + "/vchan." + std::to_string(server) + "." + std::to_string(client) + "." +
               std::to_string(port) + ".sock";
    }

    // Runs body as domain `domain` in a child process; returns its pid.
    static pid_t run_as_domain(int domain, const std::function<int()>& body) {
        pid_t pid = fork();
        if (pid == 0) {
            setenv("VCHAN_DOMAIN", std::to_string(domain).c_str(), 1);
            _exit(body());
        }
        return pid;
    }

    static int exit_status(pid_t pid) {
        int status = 0;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    std::string dir_;
};

std::vector<std::byte> pattern(size_t size, unsigned seed) {
    std::vector<std::byte> data(size);
    for (size_t i = 0; i < size; ++i)
        data[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
    return data;
}

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// Reads until EOF (true) or error/timeout (false).
bool read_to_eof(Channel& channel, std::vector<std::byte>& out) {
    std::vector<std::byte> chunk(65536);
    for (;;) {
        ssize_t n = channel.read(chunk);
        if (n > 0) {
            out.insert(out.end(), chunk.begin(), chunk.begin() + n);
            continue;
        }
        if (n == 0) return true;
        if (errno != EAGAIN) return false;
        pollfd p{channel.fd(), POLLIN, 0};
        if (::poll(&p, 1, 20000) <= 0) return false;
    }
}

} // namespace xen_standin_fixture
using namespace xen_standin_fixture;

TEST(XenPaths, FollowTheQubesConvention) {
    EXPECT_EQ(xen_server_path(0, 512), "data/vchan/0/512");
    EXPECT_EQ(xen_client_path(42, 0, 512), "/local/domain/42/data/vchan/0/512");
}

TEST_F(XenStandin, LocalDomainComesFromXenstore) {
    setenv("VCHAN_DOMAIN", "17", 1);
    EXPECT_EQ(XenBackend().own_domain(), 17);
}

TEST_F(XenStandin, ServerPublishesClientConnectsEntryRemovedOnAccept) {
    XenBackend backend;
    auto server = backend.listen(2, 513, 4096);
    ASSERT_TRUE(server);
    EXPECT_TRUE(
        path_exists(socket_file(1, 2, 513))); // the xenstore entry, as the stand-in plays it
    EXPECT_EQ(server->accept(), nullptr);     // no client yet

    pid_t child = run_as_domain(2, [] {
        XenBackend peer;
        auto channel = peer.connect(1, 513, 20000);
        if (!channel) return 10;
        std::string ping = "ping";
        if (!channel->send_all(std::as_bytes(std::span(ping)), 20000)) return 11;
        std::array<std::byte, 4> reply{};
        if (!channel->recv_all(reply, 20000)) return 12;
        return std::memcmp(reply.data(), "pong", 4) == 0 ? 0 : 13;
    });
    auto channel = server->wait_for_client(20000);
    ASSERT_TRUE(channel);
    EXPECT_FALSE(path_exists(socket_file(1, 2, 513)));
    std::array<std::byte, 4> got{};
    ASSERT_TRUE(channel->recv_all(got, 20000));
    EXPECT_EQ(std::memcmp(got.data(), "ping", 4), 0);
    std::string pong = "pong";
    ASSERT_TRUE(channel->send_all(std::as_bytes(std::span(pong)), 20000));
    EXPECT_EQ(exit_status(child), 0);
}

TEST_F(XenStandin, BulkBothWaysThroughSmallRingsThenFlushOnClose) {
    constexpr size_t kSize = 512 << 10;
    XenBackend backend;
    auto server = backend.listen(2, 514, 1024);
    ASSERT_TRUE(server);
    pid_t child = run_as_domain(2, [] {
        XenBackend peer;
        auto channel = peer.connect(1, 514, 20000);
        if (!channel) return 10;
        if (!channel->send_all(pattern(kSize, 7), 60000)) return 11;
        std::vector<std::byte> received;
        if (!read_to_eof(*channel, received)) return 12;
        return received == pattern(kSize, 9) ? 0 : 13;
    });
    auto channel = server->wait_for_client(20000);
    ASSERT_TRUE(channel);
    std::vector<std::byte> received;
    received.reserve(kSize);
    std::vector<std::byte> chunk(65536);
    while (received.size() < kSize) {
        ssize_t n = channel->read(chunk);
        if (n > 0) {
            received.insert(received.end(), chunk.begin(), chunk.begin() + n);
            continue;
        }
        ASSERT_TRUE(n < 0 && errno == EAGAIN) << "early EOF at " << received.size();
        pollfd p{channel->fd(), POLLIN, 0};
        ASSERT_GT(::poll(&p, 1, 20000), 0);
    }
    EXPECT_EQ(received, pattern(kSize, 7));
    // Queued, then closed at once: the close must still deliver every byte.
    ASSERT_TRUE(channel->send_all(pattern(kSize, 9), 60000));
    channel.reset(); // our close ends the peer's read with EOF
    EXPECT_EQ(exit_status(child), 0);
}

TEST_F(XenStandin, PeerCloseGivesEofAfterItsLastBytesAndWritesFail) {
    XenBackend backend;
    auto server = backend.listen(2, 515, 4096);
    ASSERT_TRUE(server);
    pid_t child = run_as_domain(2, [] {
        XenBackend peer;
        auto channel = peer.connect(1, 515, 20000);
        if (!channel) return 10;
        std::string last = "exit-code";
        return channel->send_all(std::as_bytes(std::span(last)), 20000) ? 0 : 11;
    });
    auto channel = server->wait_for_client(20000);
    ASSERT_TRUE(channel);
    std::vector<std::byte> received;
    ASSERT_TRUE(read_to_eof(*channel, received));
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(received.data()), received.size()),
              "exit-code");
    EXPECT_EQ(exit_status(child), 0);
    std::string more = "x";
    iovec iov{more.data(), more.size()};
    EXPECT_EQ(channel->writev(&iov, 1), -1);
    EXPECT_EQ(errno, EPIPE);
}

// A handler that refuses a call writes its exit code and closes without reading
// the caller's input. The pump then fails to hand the caller's bytes over, and
// must still forward what was written before the close (it once took the failed
// hand-over for the end of our writes and dropped the exit code).
TEST_F(XenStandin, CloseWithUnreadInputStillDeliversWhatWasWritten) {
    constexpr size_t kFlood = 1 << 20;
    for (int round = 0; round < 8; ++round) {
        SCOPED_TRACE(round);
        XenBackend backend;
        int port = 520 + round;
        auto server = backend.listen(2, port, 4096);
        ASSERT_TRUE(server);
        pid_t child = run_as_domain(2, [port] {
            XenBackend peer;
            auto channel = peer.connect(1, port, 20000);
            if (!channel) return 10;
            // Fails once the far side has closed; only what we receive matters.
            (void)channel->send_all(pattern(kFlood, 3), 20000);
            std::vector<std::byte> received;
            if (!read_to_eof(*channel, received)) return 12;
            std::string got(reinterpret_cast<const char*>(received.data()), received.size());
            return got == "exit-code" ? 0 : 13;
        });
        auto channel = server->wait_for_client(20000);
        ASSERT_TRUE(channel);
        // Wait until the pump has filled our end with the peer's input and is
        // holding more of it that it cannot hand over.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        for (int queued = 0; queued < (64 << 10);) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "queued " << queued;
            pollfd p{channel->fd(), POLLIN, 0};
            ASSERT_GT(::poll(&p, 1, 20000), 0);
            ASSERT_EQ(::ioctl(channel->fd(), SIOCINQ, &queued), 0);
        }
        std::string last = "exit-code";
        ASSERT_TRUE(channel->send_all(std::as_bytes(std::span(last)), 20000));
        channel.reset();
        EXPECT_EQ(exit_status(child), 0);
    }
}

TEST_F(XenStandin, ConnectTimesOutWithoutServerAndRefusesLoopback) {
    XenBackend backend;
    EXPECT_EQ(backend.connect(5, 600, 50), nullptr);
    EXPECT_EQ(backend.connect(1, 600, 50), nullptr);
}

TEST_F(XenStandin, ClientWaitsForALateServer) {
    pid_t child = run_as_domain(2, [] {
        XenBackend peer;
        auto channel = peer.connect(1, 516, 20000);
        if (!channel) return 10;
        std::array<std::byte, 2> got{};
        return channel->recv_all(got, 20000) ? 0 : 11;
    });
    // The child is already waiting on its watch (or will find the key at once).
    XenBackend backend;
    auto server = backend.listen(2, 516, 4096);
    ASSERT_TRUE(server);
    auto channel = server->wait_for_client(20000);
    ASSERT_TRUE(channel);
    std::string hi = "hi";
    ASSERT_TRUE(channel->send_all(std::as_bytes(std::span(hi)), 20000));
    EXPECT_EQ(exit_status(child), 0);
}

#endif
