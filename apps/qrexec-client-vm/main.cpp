#include "agent/client_vm.h"

int main(int argc, char** argv) { return qrexec::agent::client_vm_main(argc, argv); }
