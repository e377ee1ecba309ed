// qrexec-lab down: stop the supervisor (by its recorded pid) and clean up.
#include "lab/cli.h"

#include "io/fd.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

int cmd_down(const Context& ctx, const Args&) {
    const StatePaths& paths = ctx.paths;
    std::string name = "lab";
    if (auto text = read_file(paths.lab_json()))
        if (auto state = lab_state_from_json(*text, nullptr))
            name = "lab '" + state->lab.name + "'";
    auto sup = supervisor_of(paths);
    if (sup) {
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, sup->pid, 0));
        kill(sup->pid, SIGTERM);
        // The supervisor stops daemons, agents, the policy daemon, then exits.
        bool gone = false;
        if (pidfd >= 0) {
            gone = io::wait_readable(pidfd, 30000);
            if (!gone) kill(sup->pid, SIGKILL), io::wait_readable(pidfd, 5000);
            close(pidfd);
        }
        (void)gone;
    }
    bool had_state = fs::exists(paths.lab_json()) || fs::exists(paths.components());
    clean_stale(paths);
    if (!sup && !had_state) {
        fmt::print("no lab is up (state dir {})\n", paths.root);
        return 0;
    }
    fmt::print("{} is down\n", name);
    return 0;
}

} // namespace qrexec::lab
