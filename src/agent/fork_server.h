// qrexec-fork-server (AGENT.md §8): runs calls inside a user's session on the
// agent's behalf; one request per connection, handled by a forked call handler
// that keeps the connection open until the call ends.
#pragma once

namespace qrexec::agent {

int fork_server_main(int argc, char** argv);

} // namespace qrexec::agent
