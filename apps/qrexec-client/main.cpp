// qrexec-client (dom0): run commands in VMs and answer VM-initiated calls.
#include "client/client.h"

int main(int argc, char** argv) {
    return qrexec::client::qrexec_client_main(argc, argv);
}
