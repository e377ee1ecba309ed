#include "lab/calllog.h"

#include <sys/time.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>

namespace qrexec::lab {
using nlohmann::json;

double now_seconds() {
    timeval tv{};
    gettimeofday(&tv, nullptr);
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

std::string record_to_json(const CallRecord& r) {
    json j{{"kind", r.kind}, {"time", r.time}};
    auto put = [&](const char* key, const std::string& value) {
        if (!value.empty()) j[key] = value;
    };
    put("source", r.source);
    put("target", r.target);
    put("service", r.service);
    put("decision", r.decision);
    put("decided_by", r.decided_by);
    put("via", r.via);
    put("detail", r.detail);
    put("component", r.component);
    if (r.exit_status) j["exit_status"] = *r.exit_status;
    if (r.bytes_in) j["bytes_in"] = *r.bytes_in;
    if (r.bytes_out) j["bytes_out"] = *r.bytes_out;
    if (r.duration) j["duration"] = *r.duration;
    return j.dump();
}

std::optional<CallRecord> record_from_json(const std::string& line) {
    try {
        json j = json::parse(line);
        if (!j.is_object()) return std::nullopt;
        CallRecord r;
        r.kind = j.value("kind", "call");
        r.time = j.value("time", 0.0);
        r.source = j.value("source", "");
        r.target = j.value("target", "");
        r.service = j.value("service", "");
        r.decision = j.value("decision", "");
        r.decided_by = j.value("decided_by", "");
        r.via = j.value("via", "");
        r.detail = j.value("detail", "");
        r.component = j.value("component", "");
        if (j.contains("exit_status")) r.exit_status = j["exit_status"].get<int>();
        if (j.contains("bytes_in")) r.bytes_in = j["bytes_in"].get<long long>();
        if (j.contains("bytes_out")) r.bytes_out = j["bytes_out"].get<long long>();
        if (j.contains("duration")) r.duration = j["duration"].get<double>();
        return r;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

namespace {
std::string clock_text(double t) {
    time_t secs = static_cast<time_t>(t);
    tm local{};
    localtime_r(&secs, &local);
    char buf[16];
    strftime(buf, sizeof buf, "%H:%M:%S", &local);
    return fmt::format("{}.{:03d}", buf, static_cast<int>((t - static_cast<double>(secs)) * 1000));
}
std::string opt_text(const std::optional<long long>& v) {
    return v ? std::to_string(*v) : "-";
}
} // namespace

std::string format_header() {
    return fmt::format("{:<12} {:<10} {:<10} {:<26} {:<10} {:<22} {:>4} {:>8} {:>8} {:>8}", "TIME",
                       "SOURCE", "TARGET", "SERVICE", "DECISION", "DECIDED BY", "EXIT", "IN", "OUT",
                       "SECONDS");
}

std::string format_record(const CallRecord& r) {
    if (r.kind == "event")
        return fmt::format("{:<12} ** {}: {}", clock_text(r.time), r.component, r.detail);
    std::string decided = r.decided_by.empty() ? "-" : r.decided_by;
    // Keep the tail of long paths: the file name and line are what matter.
    if (decided.size() > 22) decided = "…" + decided.substr(decided.size() - 21);
    std::string line =
        fmt::format("{:<12} {:<10} {:<10} {:<26} {:<10} {:<22} {:>4} {:>8} {:>8} {:>8}",
                    clock_text(r.time), r.source, r.target.empty() ? "@default" : r.target,
                    r.service, r.decision.empty() ? "?" : r.decision, decided,
                    r.exit_status ? std::to_string(*r.exit_status) : "-", opt_text(r.bytes_in),
                    opt_text(r.bytes_out), r.duration ? fmt::format("{:.3f}", *r.duration) : "-");
    if (!r.detail.empty()) line += "  (" + r.detail + ")";
    return line;
}

namespace {
// "svc" and "svc+" are the same call (the daemon adds no '+', callers may).
bool same_service(const std::string& a, const std::string& b) {
    auto strip = [](std::string s) {
        if (!s.empty() && s.back() == '+') s.pop_back();
        return s;
    };
    return strip(a) == strip(b);
}
} // namespace

std::vector<CallRecord> merge_records(std::vector<CallRecord> records) {
    std::vector<bool> drop(records.size(), false);
    for (size_t i = 0; i < records.size(); ++i) {
        const CallRecord call = records[i];
        if (call.kind != "call") continue;
        double end = call.time + call.duration.value_or(0) + 0.5;
        for (size_t j = 0; j < records.size(); ++j) {
            const CallRecord& tap = records[j];
            if (drop[j] || tap.kind != "policy") continue;
            if (tap.source == call.source && same_service(tap.service, call.service) &&
                tap.time >= call.time - 0.5 && tap.time <= end) {
                drop[j] = true;
                // The tap saw the policy's own answer: it is the better source.
                CallRecord& c = records[i];
                if (!tap.decision.empty() && tap.decision != "?") c.decision = tap.decision;
                if (!tap.decided_by.empty()) c.decided_by = tap.decided_by;
                if (!tap.detail.empty() && c.detail.find(tap.detail) == std::string::npos)
                    c.detail = c.detail.empty() ? tap.detail : c.detail + "; " + tap.detail;
                break;
            }
        }
    }
    std::vector<CallRecord> out;
    for (size_t i = 0; i < records.size(); ++i)
        if (!drop[i]) out.push_back(std::move(records[i]));
    std::stable_sort(out.begin(), out.end(),
                     [](const CallRecord& a, const CallRecord& b) { return a.time < b.time; });
    return out;
}

} // namespace qrexec::lab
