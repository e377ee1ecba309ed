// The call log (state/calls.log): one JSON object per line, appended by the
// lab's own wrappers (call, run), by the policy tap (every policy decision the
// daemons asked for) and by the supervisor (component events). `qrexec-lab log`
// merges them into one line per call. See docs/LAB.md for each column's source.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace qrexec::lab {

struct CallRecord {
    std::string kind = "call";           // "call" (wrapped call/run), "policy" (tap), "event"
    double time = 0;                     // unix seconds, start of the call
    std::string source, target, service; // service = "svc+arg" or "(command)" for run
    std::string decision;   // "allow", "deny", "ask:allow", "ask:deny", "dom0" (run), "?"
    std::string decided_by; // policy "file:line", "" if unknown
    std::optional<int> exit_status;
    std::optional<long long> bytes_in, bytes_out; // caller->service, service->caller
    std::optional<double> duration;               // seconds
    std::string via;       // "qrexec-lab call", "qrexec-lab run", "policy daemon"
    std::string detail;    // events: what happened; ask: how it was answered
    std::string component; // events
};

std::string record_to_json(const CallRecord& record);
std::optional<CallRecord> record_from_json(const std::string& line);

// The human-readable line `qrexec-lab log` prints.
std::string format_record(const CallRecord& record);
std::string format_header();

// Drops policy-tap records that a wrapped call already explains (same source,
// target, service within the call's duration), so each call is one line.
std::vector<CallRecord> merge_records(std::vector<CallRecord> records);

double now_seconds();

} // namespace qrexec::lab
