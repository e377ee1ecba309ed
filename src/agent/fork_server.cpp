#include "agent/fork_server.h"

#include "agent/call_handler.h"
#include "io/fd.h"
#include "io/log.h"
#include "io/process.h"
#include "io/unix_socket.h"
#include "protocol/messages.h"
#include "services/command.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace qrexec::agent {
namespace {

using namespace qrexec::protocol;

// The agent never sends longer commands to a fork server (AGENT.md §8).
constexpr uint32_t kMaxCmdlineLen = kMaxQrexecCmdLen + 1;

io::Fd create_socket(const std::string& path) {
    // File mode from the process umask (AGENT.md §8); blocking accept loop.
    io::Fd fd =
        io::listen_unix(path, {.backlog = 5, .nonblocking = false, .bind_umask = std::nullopt});
    if (!fd) QLOG_ERRNO("cannot listen on {}", path);
    return fd;
}

// Runs in the forked child that owns the connection: read, validate, run the call.
int serve_connection(int conn) {
    std::array<std::byte, kForkServerHeaderSize> header{};
    if (io::read_all(conn, header) != static_cast<ssize_t>(header.size())) {
        QLOG("short request header from the agent");
        return 1;
    }
    auto decoded = decode_fork_server_header(header);
    auto type = static_cast<uint32_t>(decoded.type);
    auto domain = static_cast<uint32_t>(decoded.connect_domain);
    auto port = static_cast<uint32_t>(decoded.connect_port);
    uint32_t len = decoded.cmdline_len;
    if (type != MSG_EXEC_CMDLINE && type != MSG_JUST_EXEC) {
        QLOG("bad request type 0x{:x} from the agent", type);
        return 1;
    }
    if (len < 1 || len > kMaxCmdlineLen) {
        QLOG("bad command length {} from the agent", len);
        return 1;
    }
    std::string cmdline(len, '\0');
    if (io::read_all(conn, std::as_writable_bytes(std::span(cmdline))) !=
        static_cast<ssize_t>(len)) {
        QLOG("short command from the agent");
        return 1;
    }
    if (cmdline.back() != '\0' || cmdline.find('\0') != len - 1) {
        QLOG("malformed command from the agent (NUL placement)");
        return 1;
    }
    cmdline.pop_back();
    CallRequest request;
    request.type = type;
    request.connect_domain = domain;
    request.connect_port = port;
    request.run_as = RunAs::Myself;
    std::string error;
    request.command = services::parse_command(cmdline, false, &error);
    if (!request.command) QLOG("invalid command from the agent: {}", error);
    return run_call_handler(request);
}

} // namespace

int fork_server_main(int argc, char** argv) {
    io::require_standard_fds("qrexec-fork-server");
    if (argc > 2) {
        std::fprintf(stderr, "Usage: %s [socket path]\n", argv[0]);
        return 1;
    }
    std::string path;
    if (argc == 2) {
        path = argv[1];
    } else {
        const char* user = std::getenv("USER");
        path = std::string("/var/run/qubes/qrexec-server.") + (user ? user : "") + ".sock";
    }
    io::Fd listener = create_socket(path);
    if (!listener) return 1;
    pid_t pid = fork();
    if (pid < 0) {
        QLOG_ERRNO("fork");
        return 1;
    }
    if (pid > 0) _exit(0);    // the socket exists: the server is ready
    signal(SIGCHLD, SIG_IGN); // handlers are reaped automatically
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int conn = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            QLOG_ERRNO("accept");
            ::unlink(path.c_str());
            return 0;
        }
        pid_t child = fork();
        if (child == 0) {
            // The handler keeps the connection open: the agent sees EOF when the call ends.
            signal(SIGCHLD, SIG_DFL);
            listener.reset();
            io::set_cloexec(conn, true);
            _exit(serve_connection(conn));
        }
        if (child < 0) QLOG_ERRNO("fork");
        ::close(conn);
    }
}

} // namespace qrexec::agent
