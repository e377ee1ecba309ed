// qrexec-lab's subcommands. main() just calls run_lab_command.
#pragma once

#include <string>
#include <vector>

namespace qrexec::lab {

// argv without the program name. Returns the process exit status.
int run_lab_command(const std::vector<std::string>& args);

} // namespace qrexec::lab
