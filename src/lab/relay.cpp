#include "lab/relay.h"

#include "io/fd.h"
#include "io/process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>
#include <string>

namespace qrexec::lab {

namespace {

// One direction: read from `from`, buffer, write to `to`.
struct Pipe {
    int from = -1;
    int to = -1;
    std::string buffer;
    bool eof = false;  // `from` reached EOF
    bool done = false; // everything written and `to` shut down
    long long bytes = 0;
};

bool would_block() {
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

} // namespace

std::optional<RelayResult> run_relayed(const LaunchPlan& plan, bool relay_io,
                                       const std::vector<ExtraFd>& extra) {
    io::FdPair in_pair, out_pair;
    if (relay_io) {
        in_pair = io::make_socketpair();
        out_pair = io::make_socketpair();
    }
    signal(SIGPIPE, SIG_IGN);
    io::StdioFds stdio;
    if (relay_io) stdio = {in_pair.second.get(), out_pair.second.get(), -1};
    io::Child child = io::spawn(stdio, [&]() -> int {
        io::close_fds_from(3);
        exec_plan(plan);
        return 127;
    });
    in_pair.second.reset();
    out_pair.second.reset();

    RelayResult result;
    Pipe up, down;
    up.from = 0; // our stdin -> child
    up.to = in_pair.first.get();
    down.from = out_pair.first.get(); // child -> our stdout
    down.to = 1;
    if (relay_io) {
        io::set_nonblocking(up.to);
        io::set_nonblocking(down.from);
    } else {
        up.done = down.done = true;
    }
    bool exited = false;
    int raw = 0;
    for (;;) {
        if (!exited) {
            pid_t r = waitpid(child.pid(), &raw, WNOHANG);
            if (r == child.pid()) exited = true;
        }
        // After the child is gone nothing more goes to it.
        if (exited && !up.done) {
            up.done = true;
            if (up.to >= 0) shutdown(up.to, SHUT_WR);
        }
        if (exited && down.done) break;
        std::vector<pollfd> fds;
        auto add = [&](int fd, short ev) {
            fds.push_back({fd, ev, 0});
            return fds.size() - 1;
        };
        if (!exited) add(child.exit_fd(), POLLIN);
        size_t i_up_r = SIZE_MAX, i_up_w = SIZE_MAX, i_down_r = SIZE_MAX, i_down_w = SIZE_MAX;
        if (!up.done && !up.eof && up.buffer.size() < 65536) i_up_r = add(up.from, POLLIN);
        if (!up.done && !up.buffer.empty()) i_up_w = add(up.to, POLLOUT);
        if (!down.done && !down.eof && down.buffer.size() < 65536)
            i_down_r = add(down.from, POLLIN);
        if (!down.done && !down.buffer.empty()) i_down_w = add(down.to, POLLOUT);
        size_t first_extra = fds.size();
        for (const auto& e : extra)
            add(e.fd, POLLIN);
        if (poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        char buf[65536];
        auto pump_read = [&](Pipe& p, size_t idx) {
            if (idx == SIZE_MAX || !fds[idx].revents) return;
            ssize_t n = read(p.from, buf, sizeof buf);
            if (n > 0)
                p.buffer.append(buf, static_cast<size_t>(n));
            else if (n == 0 || !would_block())
                p.eof = true;
        };
        auto pump_write = [&](Pipe& p, size_t idx) {
            if (idx == SIZE_MAX || !fds[idx].revents) return;
            ssize_t n = write(p.to, p.buffer.data(), p.buffer.size());
            if (n > 0) {
                p.bytes += n;
                p.buffer.erase(0, static_cast<size_t>(n));
            } else if (n < 0 && !would_block()) {
                p.buffer.clear();
                p.eof = true;
            }
        };
        pump_read(up, i_up_r);
        pump_write(up, i_up_w);
        pump_read(down, i_down_r);
        pump_write(down, i_down_w);
        for (Pipe* p : {&up, &down}) {
            if (!p->done && p->eof && p->buffer.empty()) {
                p->done = true;
                if (p == &up)
                    shutdown(p->to, SHUT_WR);
                else
                    close(1); // the reader of our stdout sees EOF now
            }
        }
        for (size_t k = 0; k < extra.size(); ++k)
            if (fds[first_extra + k].revents) extra[k].on_readable();
    }
    if (!exited) {
        waitpid(child.pid(), &raw, 0);
    }
    child.detach();
    result.raw_status = raw;
    result.exit_status = io::decode_wait_status(raw);
    result.bytes_in = up.bytes;
    result.bytes_out = down.bytes;
    return result;
}

} // namespace qrexec::lab
