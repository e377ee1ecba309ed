#include "lab/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <string_view>

namespace qrexec::lab {
namespace {

constexpr const char* kTraceUsage = R"(usage: qrexec-lab trace [FILE] [--call N] [--list]
Shows one call's stages, from every process that took part, as one timeline.
FILE is the trace file the programs wrote (QREXEC_TRACE=FILE when the lab or
the programs were started; default: $QREXEC_TRACE).
  --call N   the N-th call in the file (1 = first, -1 = last; default -1)
  --list     one line per call: start time, duration, stage count, outcome
)";

struct TraceLine {
    uint64_t us = 0;
    size_t order = 0;    // position in the file: ties keep write order
    std::string process; // program[pid]
    std::string stage;
    std::vector<std::string> tokens; // '+' kept
    std::string details;             // everything that is not a token
};

bool is_token(std::string_view word) {
    if (!word.empty() && word.front() == '+') word.remove_prefix(1);
    for (std::string_view prefix : {"cvm:", "qc:", "trig:", "vchan:"})
        if (word.substr(0, prefix.size()) == prefix) return true;
    return false;
}

std::optional<TraceLine> parse_line(std::string_view text, size_t order) {
    std::vector<std::string_view> words;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        if (end > pos) words.push_back(text.substr(pos, end - pos));
        pos = end + 1;
    }
    if (words.size() < 3) return std::nullopt;
    TraceLine line;
    auto [ptr, ec] = std::from_chars(words[0].data(), words[0].data() + words[0].size(), line.us);
    if (ec != std::errc() || ptr != words[0].data() + words[0].size()) return std::nullopt;
    line.order = order;
    line.process = words[1];
    line.stage = words[2];
    for (size_t i = 3; i < words.size(); ++i) {
        if (is_token(words[i])) {
            line.tokens.emplace_back(words[i]);
        } else {
            if (!line.details.empty()) line.details += ' ';
            line.details += words[i];
        }
    }
    return line;
}

// Lines sharing a token belong to one call; a '+token' starts a new binding
// (ports and fds are reused by later calls), so it never joins an older call.
std::vector<std::vector<const TraceLine*>> group_calls(const std::vector<TraceLine>& lines) {
    std::vector<size_t> parent;
    auto find = [&parent](size_t n) {
        while (parent[n] != n)
            n = parent[n] = parent[parent[n]];
        return n;
    };
    std::map<std::string, size_t> bound;
    std::vector<size_t> line_node(lines.size());
    for (size_t i = 0; i < lines.size(); ++i) {
        std::optional<size_t> node;
        for (const auto& token : lines[i].tokens) {
            if (token.front() == '+') continue;
            auto it = bound.find(token);
            if (it == bound.end()) continue;
            size_t root = find(it->second);
            if (!node)
                node = root;
            else if (root != *node)
                parent[root] = *node;
        }
        if (!node) {
            node = parent.size();
            parent.push_back(*node);
        }
        for (const auto& token : lines[i].tokens)
            bound[token.front() == '+' ? token.substr(1) : token] = *node;
        line_node[i] = *node;
    }
    std::map<size_t, std::vector<const TraceLine*>> by_root;
    for (size_t i = 0; i < lines.size(); ++i)
        by_root[find(line_node[i])].push_back(&lines[i]);
    std::vector<std::vector<const TraceLine*>> calls;
    for (auto& [root, members] : by_root)
        calls.push_back(std::move(members));
    std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) {
        return std::tie(a.front()->us, a.front()->order) <
               std::tie(b.front()->us, b.front()->order);
    });
    return calls;
}

std::string outcome(const std::vector<const TraceLine*>& call) {
    for (auto it = call.rbegin(); it != call.rend(); ++it)
        if ((*it)->stage == "end" && (*it)->process.rfind("qrexec-client", 0) == 0)
            return (*it)->details;
    for (auto it = call.rbegin(); it != call.rend(); ++it)
        if ((*it)->stage == "refused" || (*it)->stage == "end") return (*it)->stage;
    return "-";
}

void print_timeline(const std::vector<const TraceLine*>& call, size_t index, size_t count) {
    uint64_t start = call.front()->us;
    fmt::print("call {} of {}: {} stages, {:.3f} ms, {}\n", index + 1, count, call.size(),
               static_cast<double>(call.back()->us - start) / 1000.0, outcome(call));
    size_t width = 0;
    for (const auto* line : call)
        width = std::max(width, line->process.size());
    for (const auto* line : call) {
        fmt::print("{:>10.3f} ms  {:<{}}  {:<17} {}\n",
                   static_cast<double>(line->us - start) / 1000.0, line->process, width,
                   line->stage, line->details);
    }
}

} // namespace

int run_trace_command(const std::vector<std::string>& args, bool help) {
    if (help) {
        fmt::print("{}", kTraceUsage);
        return 0;
    }
    std::string path;
    long which = -1;
    bool list = false;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--list") {
            list = true;
        } else if (a == "--call" && i + 1 < args.size()) {
            char* end = nullptr;
            which = std::strtol(args[++i].c_str(), &end, 10);
            if (*end || which == 0) {
                fmt::print(stderr, "qrexec-lab trace: bad call number '{}'\n{}", args[i],
                           kTraceUsage);
                return 2;
            }
        } else if (!a.empty() && a[0] != '-' && path.empty()) {
            path = a;
        } else {
            fmt::print(stderr, "qrexec-lab trace: unexpected argument '{}'\n{}", a, kTraceUsage);
            return 2;
        }
    }
    if (path.empty()) {
        const char* env = std::getenv("QREXEC_TRACE");
        if (!env || !*env) {
            fmt::print(stderr, "qrexec-lab trace: no FILE and QREXEC_TRACE is not set\n");
            return 2;
        }
        path = env;
    }
    std::ifstream in(path);
    if (!in) {
        fmt::print(stderr, "qrexec-lab trace: cannot read {}\n", path);
        return 1;
    }
    std::vector<TraceLine> lines;
    std::string text;
    size_t bad = 0;
    while (std::getline(in, text)) {
        if (auto line = parse_line(text, lines.size() + bad))
            lines.push_back(std::move(*line));
        else
            ++bad;
    }
    if (bad) fmt::print(stderr, "qrexec-lab trace: skipped {} malformed line(s)\n", bad);
    std::stable_sort(lines.begin(), lines.end(), [](const TraceLine& a, const TraceLine& b) {
        return std::tie(a.us, a.order) < std::tie(b.us, b.order);
    });
    auto calls = group_calls(lines);
    if (calls.empty()) {
        fmt::print(stderr, "qrexec-lab trace: no calls in {}\n", path);
        return 1;
    }
    if (list) {
        for (size_t i = 0; i < calls.size(); ++i) {
            const auto& call = calls[i];
            fmt::print("{:>4}  {}  {:>9.3f} ms  {:>3} stages  {}\n", i + 1, call.front()->us,
                       static_cast<double>(call.back()->us - call.front()->us) / 1000.0,
                       call.size(), outcome(call));
        }
        return 0;
    }
    long count = static_cast<long>(calls.size());
    long index = which > 0 ? which - 1 : count + which;
    if (index < 0 || index >= count) {
        fmt::print(stderr, "qrexec-lab trace: no call {} (the file has {})\n", which, count);
        return 1;
    }
    print_timeline(calls[static_cast<size_t>(index)], static_cast<size_t>(index), calls.size());
    return 0;
}

} // namespace qrexec::lab
