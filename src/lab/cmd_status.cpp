// qrexec-lab status: the domains and the state of every component.
#include "lab/cli.h"

#include <fmt/format.h>

#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

int cmd_status(const Context& ctx, const Args&) {
    if (!supervisor_of(ctx.paths)) {
        bool stale = fs::exists(ctx.paths.components());
        fmt::print("no lab is up (state dir {}){}\n", ctx.paths.root,
                   stale ? "; the supervisor died: run 'qrexec-lab down' to clean up" : "");
        return 3;
    }
    auto state = load_running(ctx.paths);
    if (!state) return 3;
    return print_status(ctx.paths, *state) ? 0 : 1;
}

} // namespace qrexec::lab
