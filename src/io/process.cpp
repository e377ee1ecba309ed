#include "io/process.h"
#include "io/trace.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace qrexec::io {

int decode_wait_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

Child::Child(pid_t pid) : pid_(pid) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) {
        set_cloexec(fd);
        pidfd_.reset(fd);
    }
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::move(other.pidfd_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

Child& Child::operator=(Child&& other) noexcept {
    if (this != &other) {
        if (running()) wait();
        pid_ = std::exchange(other.pid_, -1);
        pidfd_ = std::move(other.pidfd_);
        status_ = std::exchange(other.status_, std::nullopt);
    }
    return *this;
}

Child::~Child() {
    // Never leave a zombie behind: a Child that is still ours is reaped.
    if (running()) wait();
}

std::optional<int> Child::try_wait() {
    if (status_ || pid_ <= 0) return status_;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_)
        status_ = decode_wait_status(status);
    else if (r < 0 && errno == ECHILD)
        status_ = 255;
    return status_;
}

int Child::wait() {
    if (status_ || pid_ <= 0) return status_.value_or(255);
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    status_ = r == pid_ ? decode_wait_status(status) : 255;
    return *status_;
}

namespace {
std::vector<char*> c_strings(const std::vector<std::string>& strings) {
    std::vector<char*> result;
    result.reserve(strings.size() + 1);
    for (const auto& s : strings)
        result.push_back(const_cast<char*>(s.c_str()));
    result.push_back(nullptr);
    return result;
}
} // namespace

void exec_program(const std::string& path, const std::vector<std::string>& argv) {
    auto args = c_strings(argv);
    ::execv(path.c_str(), args.data());
}

void exec_program(const std::string& path, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env) {
    auto args = c_strings(argv);
    auto envp = c_strings(env);
    ::execve(path.c_str(), args.data(), envp.data());
}

namespace {
void close_range_or_loop(unsigned first, unsigned last) {
    if (first > last) return;
    if (syscall(SYS_close_range, first, last, 0) == 0) return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < max && fd <= static_cast<long>(last); ++fd)
        close(static_cast<int>(fd));
}
} // namespace

void close_fds_from(int lowest) {
    // A forked child that runs our code (a call handler) keeps writing the stage
    // trace; the fd is CLOEXEC, so an exec'ed program does not get it.
    int keep = trace_fd();
    if (keep < lowest) {
        close_range_or_loop(static_cast<unsigned>(lowest), ~0U);
        return;
    }
    if (keep > lowest)
        close_range_or_loop(static_cast<unsigned>(lowest), static_cast<unsigned>(keep) - 1);
    close_range_or_loop(static_cast<unsigned>(keep) + 1, ~0U);
}

void reset_signals_for_child() {
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        signal(sig, SIG_DFL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
}

namespace {
// dup2 that also works when the source already is the target (clears CLOEXEC).
void install_fd(int from, int to) {
    if (from < 0) return;
    if (from == to)
        set_cloexec(to, false);
    else
        dup2(from, to);
}
} // namespace

namespace {

// RAII for the two posix_spawn descriptor objects.
struct SpawnActions {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnActions() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnActions() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnActions(const SpawnActions&) = delete;
    SpawnActions& operator=(const SpawnActions&) = delete;
};

void check_spawn(int rc, const char* what) {
    if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

} // namespace

Child spawn_exec(const ExecSpec& spec) {
    SpawnActions sa;
    // Sources inside 0..2 are first copied above 2 (parent side) so the dup2
    // sequence cannot clobber one with another.
    Fd moved[3];
    int from[3] = {spec.stdio.in, spec.stdio.out, spec.stdio.err};
    for (int target = 0; target < 3; ++target) {
        if (from[target] < 0 || from[target] > 2 || from[target] == target) continue;
        moved[target].reset(fcntl(from[target], F_DUPFD_CLOEXEC, 3));
        if (!moved[target]) throw std::system_error(errno, std::generic_category(), "dup");
        from[target] = moved[target].get();
    }
    for (int target = 0; target < 3; ++target) {
        if (from[target] < 0) continue;
        // dup2(fd, fd) in a file action clears FD_CLOEXEC (glibc >= 2.29).
        check_spawn(posix_spawn_file_actions_adddup2(&sa.actions, from[target], target),
                    "posix_spawn_file_actions_adddup2");
    }
    check_spawn(posix_spawn_file_actions_addclosefrom_np(&sa.actions, 3),
                "posix_spawn_file_actions_addclosefrom_np");
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    check_spawn(posix_spawnattr_setsigdefault(&sa.attr, &all), "posix_spawnattr_setsigdefault");
    check_spawn(posix_spawnattr_setsigmask(&sa.attr, &none), "posix_spawnattr_setsigmask");
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (spec.new_session) flags |= POSIX_SPAWN_SETSID;
    check_spawn(posix_spawnattr_setflags(&sa.attr, flags), "posix_spawnattr_setflags");

    auto argv = c_strings(spec.argv);
    std::vector<char*> envp;
    if (spec.env) envp = c_strings(*spec.env);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, spec.path.c_str(), &sa.actions, &sa.attr, argv.data(),
                         spec.env ? envp.data() : environ);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + spec.path);
    return Child(pid);
}

Child spawn(StdioFds stdio, const std::function<int()>& body) {
    pid_t pid = fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
        reset_signals_for_child();
        // Move sources out of the 0..2 range first so dup2 order cannot clobber them.
        int in = stdio.in >= 0 && stdio.in <= 2 ? fcntl(stdio.in, F_DUPFD_CLOEXEC, 3) : stdio.in;
        int out =
            stdio.out >= 0 && stdio.out <= 2 ? fcntl(stdio.out, F_DUPFD_CLOEXEC, 3) : stdio.out;
        int err =
            stdio.err >= 0 && stdio.err <= 2 ? fcntl(stdio.err, F_DUPFD_CLOEXEC, 3) : stdio.err;
        install_fd(in, 0);
        install_fd(out, 1);
        install_fd(err, 2);
        _exit(body());
    }
    return Child(pid);
}

} // namespace qrexec::io
