#include "agent/agent.h"

int main(int argc, char** argv) { return qrexec::agent::agent_main(argc, argv); }
