#include "services/session.h"

#include "io/log.h"
#include "services/environment.h"
#include "services/lookup.h"

#include <fcntl.h>
#include <unistd.h>

namespace qrexec::services {
namespace {

constexpr size_t kMaxWaitForSessionPath = 256; // incl. NUL

// Runs in the child; never returns.
[[noreturn]] void exec_wait_for_session(const std::vector<std::string>& service_dirs,
                                        const std::string& source) {
    FindResult found = find(service_dirs, kWaitForSessionService, LookupMode::Service);
    if (found.status != LookupStatus::Found || found.is_tcp ||
        found.path.size() + 1 > kMaxWaitForSessionPath)
        _exit(1);
    EnvList env = current_environment();
    set_env(env, "QREXEC_REMOTE_DOMAIN", source);
    std::vector<char*> c_env;
    for (auto& e : env)
        c_env.push_back(e.data());
    c_env.push_back(nullptr);
    std::string argv0 = kWaitForSessionService;
    char* argv[] = {argv0.data(), nullptr};
    execve(found.path.c_str(), argv, c_env.data());
    QLOG_ERRNO("Cannot execute {}", found.path);
    _exit(1);
}

} // namespace

io::Child spawn_wait_for_session(const std::vector<std::string>& service_dirs,
                                 const std::string& source, int stdin_fd) {
    return io::spawn({stdin_fd, -1, -1}, [&]() -> int {
        io::close_fds_from(3);
        exec_wait_for_session(service_dirs, source);
    });
}

void run_wait_for_session_sync(const std::vector<std::string>& service_dirs,
                               const std::string& source) {
    io::Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null) {
        QLOG_ERRNO("open /dev/null");
        return;
    }
    auto child = spawn_wait_for_session(service_dirs, source, null.get());
    child.wait();
}

} // namespace qrexec::services
