// `qrexec-lab trace`: one call's stages from every process as one timeline
// (the QREXEC_TRACE file, format in io/trace.h).
#pragma once

#include <string>
#include <vector>

namespace qrexec::lab {

int run_trace_command(const std::vector<std::string>& args, bool help);

} // namespace qrexec::lab
