// qrexec-lab: run a qrexec lab on one machine (see docs/LAB.md).
#include "io/log.h"
#include "lab/commands.h"

#include <string>
#include <vector>

int main(int argc, char** argv) {
    qrexec::io::set_log_program("qrexec-lab");
    std::vector<std::string> args(argv + 1, argv + argc);
    return qrexec::lab::run_lab_command(args);
}
