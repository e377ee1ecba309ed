// The data-stream engine: one qrexec call's data vchan on one side, local fds on
// the other (PROTOCOL.md §5). Every endpoint uses it: the agent's service side,
// qrexec-client-vm, qrexec-client (both its client side and its dom0-service side).
#pragma once

#include "io/fd.h"
#include "io/process.h"
#include "transport/vchan.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace qrexec::stream {

enum class Role {
    Service, // runs the program: sends STDOUT/STDERR/EXIT_CODE, receives STDIN
    Client,  // the caller: sends STDIN, receives STDOUT/STDERR/EXIT_CODE
};

// How "closing" one direction of a local fd is done (PROTOCOL.md §5.7).
enum class CloseMethod {
    Close,    // close(2): non-sockets, and fds inherited from a parent
    Shutdown, // shutdown(2) of that direction: private socketpairs, shared sockets
};

struct LocalFd {
    int fd = -1; // -1: absent
    CloseMethod close = CloseMethod::Close;
};

struct EngineConfig {
    Role role = Role::Service;
    uint32_t version = 4; // negotiated data-vchan protocol version

    // Data read from `input` is sent (service: STDOUT, client: STDIN).
    LocalFd input;
    // Received stream data is written to `output` (service: STDIN, client: STDOUT).
    LocalFd output;
    // Service: the program's stderr, read and sent as STDERR (absent: no separate
    // stderr, so an empty STDERR is sent first). Client: where remote STDERR goes.
    LocalFd error;

    // Sent before anything read from `input` (client: as STDIN; service: as STDOUT).
    std::string prefix_data;
    bool filter_stdout = false; // client: terminal-control filter on remote stdout
    bool filter_stderr = false;

    // Socket/TCP services (AGENT.md §5).
    bool exit_on_client_eof = false;
    bool exit_on_service_eof = false;

    // SIGUSR1 switches to reading output from the `output` socket (AGENT.md §6).
    // The signal must already be blocked by the caller (see block_sigusr1()).
    bool single_socket_on_sigusr1 = false;
    // With single_socket_on_sigusr1: an eventfd that stands for the signal (the
    // agent serving calls in its own process routes each SIGUSR1 to the call
    // whose service sent it). -1: the engine reads SIGUSR1 from its own signalfd.
    // Not owned: it must outlive the engine.
    int single_socket_event_fd = -1;
    // Called when the program's output ends before any switch, so that a signal
    // it sent before closing that output, still being routed to this call, lands
    // in single_socket_event_fd first (the agent: ServiceSignalRoutes::drain).
    std::function<void()> collect_pending_switch;

    // Service side: also gets every chunk of the program's stderr (the agent
    // copies it to the system log, AGENT.md §2.6).
    std::function<void(std::span<const std::byte>)> stderr_copy;

    // Stage trace (io/trace.h): the call's tokens in this process; empty: none.
    // Traced: first-byte-out/-in (main stream), eof-out/-in, exit-code.
    std::string trace_tokens;
};

struct EngineResult {
    // Service: the exit code sent (nullopt when none was sent). Client: the remote
    // exit code (nullopt when the vchan closed before it arrived).
    std::optional<int> exit_code;
    // Status of the local child (if any), 128+signal when killed.
    std::optional<int> child_status;
    // A fatal protocol or channel error ended the call (handler exits 1).
    bool protocol_error = false;
};

// Blocks SIGUSR1 in this process so the engine can receive it through a signalfd.
// Call before spawning the child that may send it.
void block_sigusr1();

// Runs one call to completion. Takes ownership of every fd in config (they are
// closed, by their CloseMethod, when their stream ends and at the latest on return).
// If `child` is given the engine waits for it before returning.
EngineResult run_engine(transport::Channel& channel, EngineConfig config, io::Child* child);

// Replaces terminal-unsafe bytes by '_' (DAEMON.md §8).
void filter_control_chars(std::span<std::byte> data);

// Data-vchan HELLO exchange (PROTOCOL.md §4.3); returns the negotiated version.
std::optional<uint32_t> handshake_data_channel(transport::Channel& channel, bool send_first,
                                               int timeout_ms);

} // namespace qrexec::stream
