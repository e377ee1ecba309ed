// Per-call stage trace (issue 9). Off unless QREXEC_TRACE names a file: then
// every qrexec program appends one line per stage of each call it takes part in:
//
//   <CLOCK_REALTIME µs> <program>[<pid>] <stage> <token>... [key=value...]
//
// Tokens name the call as the writing process knows it; a token written with a
// leading '+' is introduced by that line (a new binding: ids such as a data
// vchan's port are reused by later calls). `qrexec-lab trace` joins lines that
// share tokens into one timeline per call. CLOCK_REALTIME so that lines from
// different processes (and VMs with synchronised clocks) merge on one axis.
//
// Tokens:  cvm:<pid>            a qrexec-client-vm process
//          qc:<pid>             a qrexec-client process
//          trig:<dom>:<ident>   a trigger between a VM's agent and its daemon
//          vchan:<lo>-<hi>-<port>  a data vchan (the two domain ids, ascending)
//
// Free when off: trace_on() is a load and a compare after the first call; build
// the line only inside `if (io::trace_on())`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qrexec::io {

bool trace_on();
// Writes "<µs> <program>[<pid>] <stage> <rest>\n" in one write(2) (O_APPEND).
void trace_line(std::string_view stage, std::string_view rest);

// The trace file's fd if it is open in this process, else -1 (close_fds_from keeps it).
int trace_fd();

std::string trace_vchan_token(uint32_t domain_a, uint32_t domain_b, uint32_t port);

} // namespace qrexec::io
