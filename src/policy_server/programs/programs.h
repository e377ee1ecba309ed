// The policy room's programs. Each apps/<binary>/main.cpp only calls one of these, so
// the programs live (and are built, linted and tested) with the rest of the room.
#pragma once

namespace qrexec::policy {

int policy_exec_main(int argc, char** argv);    // qrexec-policy-exec
int policy_daemon_main(int argc, char** argv);  // qrexec-policy-daemon
int policy_graph_main(int argc, char** argv);   // qrexec-policy-graph
int policy_explain_main(int argc, char** argv); // qrexec-policy (explain)
int policy_lint_main(int argc, char** argv);    // qubes-policy-lint

} // namespace qrexec::policy
