// qrexec-daemon: dom0 side of one VM's control channel (DAEMON.md).
#include "daemon/startup.h"

int main(int argc, char* argv[]) {
    return qrexec::daemon::daemon_main(argc, argv);
}
