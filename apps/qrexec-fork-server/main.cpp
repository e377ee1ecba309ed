#include "agent/fork_server.h"

int main(int argc, char** argv) { return qrexec::agent::fork_server_main(argc, argv); }
