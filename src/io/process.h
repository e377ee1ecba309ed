// Child processes: fork with explicit stdio, RAII reaping, pidfd for the event loop.
#pragma once

#include "io/fd.h"

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qrexec::io {

// exit status as qrexec reports it: the exit code, or 128+signal.
int decode_wait_status(int status);

class Child {
  public:
    Child() = default;
    explicit Child(pid_t pid);
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    Child(Child&& other) noexcept;
    Child& operator=(Child&& other) noexcept;
    // A child that was never waited for is left running but reaped-by-nobody is
    // avoided: the destructor waits (blocking) only if wait_on_destroy is set.
    ~Child();

    pid_t pid() const { return pid_; }
    bool running() const { return pid_ > 0 && !status_; }
    // fd that becomes readable when the child exits (pidfd).
    int exit_fd() const { return pidfd_.get(); }
    // Non-blocking reap; returns the status once the child has exited.
    std::optional<int> try_wait();
    int wait();
    std::optional<int> status() const { return status_; }
    void detach() { pid_ = -1; }

  private:
    pid_t pid_ = -1;
    Fd pidfd_;
    std::optional<int> status_;
};

// What the child gets as fd 0/1/2; -1 keeps the parent's fd.
struct StdioFds {
    int in = -1;
    int out = -1;
    int err = -1;
};

// Forks; in the child: default signal dispositions and an empty mask, stdio
// installed, every other fd closed, then body() runs. If body returns, the child
// exits with its return value.
Child spawn(StdioFds stdio, const std::function<int()>& body);

// A child that only installs its stdio and execs: what spawn_exec needs.
struct ExecSpec {
    std::string path;
    std::vector<std::string> argv;
    std::optional<std::vector<std::string>> env; // nullopt: this process' environ
    StdioFds stdio;
    bool new_session = false; // setsid() in the child
};

// posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), no page-table copy): default
// dispositions for every signal and an empty mask set through the spawn
// attributes, stdio installed, every other fd closed. Throws std::system_error
// with the errno of a failed exec (the child never ran the program), so callers
// can fall back to spawn() where the failure must be reported from the child.
Child spawn_exec(const ExecSpec& spec);

// execv/execve with argv (and envp) given as strings. Returns only on failure,
// with errno set.
void exec_program(const std::string& path, const std::vector<std::string>& argv);
void exec_program(const std::string& path, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env);

// Close every fd >= lowest (used in children before exec).
void close_fds_from(int lowest);
void reset_signals_for_child();

} // namespace qrexec::io
