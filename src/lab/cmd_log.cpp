// qrexec-lab log: one line per call, merged from the call log and the policy tap.
#include "lab/cli.h"

#include "io/fd.h"
#include "lab/calllog.h"

#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

namespace qrexec::lab {
namespace fs = std::filesystem;

namespace {

std::vector<CallRecord> read_records(const std::string& path, size_t& offset) {
    std::vector<CallRecord> out;
    auto text = read_file(path);
    if (!text || text->size() <= offset) return out;
    size_t pos = offset;
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        if (end == std::string::npos) break; // a line still being written
        if (auto r = record_from_json(text->substr(pos, end - pos))) out.push_back(*r);
        pos = end + 1;
    }
    offset = pos;
    return out;
}

} // namespace

int cmd_log(const Context& ctx, const Args& args) {
    bool follow = false, as_json = false;
    for (const auto& a : args) {
        if (a == "-f" || a == "--follow")
            follow = true;
        else if (a == "--json")
            as_json = true;
        else
            return usage_error("unknown option " + a, "log");
    }
    size_t offset = 0;
    auto print = [&](std::vector<CallRecord> records) {
        for (const auto& r : merge_records(std::move(records)))
            fmt::print("{}\n", as_json ? record_to_json(r) : format_record(r));
        std::fflush(stdout);
    };
    if (!as_json) fmt::print("{}\n", format_header());
    print(read_records(ctx.paths.calls_log(), offset));
    if (!follow) return 0;
    io::Fd inotify(inotify_init1(IN_CLOEXEC));
    // Waiting for a lab that is not up yet: a private state dir, as `up` makes
    // it. Never re-mode one that exists (a lab with other users' domains
    // needs it traversable).
    std::error_code ec;
    if (!fs::exists(ctx.paths.root, ec)) make_dir(ctx.paths.root, 0700);
    inotify_add_watch(inotify.get(), ctx.paths.root.c_str(), IN_MODIFY | IN_CREATE);
    signal(SIGPIPE, SIG_DFL);
    for (;;) {
        io::wait_readable(inotify.get(), -1);
        char buf[4096];
        while (read(inotify.get(), buf, sizeof buf) < 0 && errno == EINTR) {
        }
        print(read_records(ctx.paths.calls_log(), offset));
    }
}

} // namespace qrexec::lab
