// libFuzzer target for qrexec-daemon's client socket (what qrexec-client and
// any local process that can reach /run/qubes/qrexec.<vm> sends): the
// daemon's own sequence — FrameBuffer with the header checks, then HELLO
// (v3 rule), then one EXEC_CMDLINE / JUST_EXEC / SERVICE_CONNECT — fed in
// chunks as the socket delivers them.
// Invariants: nothing is accepted that breaks the rules the daemon relies on
// (HELLO version >= 3, command body NUL-terminated and within the bound), and
// an accepted command re-encodes to exactly the bytes received.
#include "daemon/frame_buffer.h"
#include "fuzz_util.h"
#include "protocol/frame.h"
#include "protocol/requests.h"

#include <algorithm>

using namespace qrexec;
using namespace qrexec::protocol;
using fuzz::require;

namespace {

enum class State { Hello, Cmdline, Done };

void check_command(const daemon::Frame& frame, const ClientCommand& command) {
    require(is_client_command_header(frame.header));
    require(command.type == frame.header.type);
    require(frame.payload.size() == frame.header.len);
    require(!command.body.empty() && command.body.back() == std::byte{0});
    require(command.text.size() + 1 == command.body.size());
    require(command.body.size() + kExecParamsSize == frame.payload.size());
    require(command.body.size() <= kMaxQrexecCmdLen - kExecParamsSize);
    // The body points into the frame, just after the params.
    require(command.body.data() == frame.payload.data() + kExecParamsSize);
    auto again = encode_exec_params(command.params, command.body);
    require(std::equal(again.begin(), again.end(), frame.payload.begin(), frame.payload.end()));
    if (frame.header.type == MSG_SERVICE_CONNECT) {
        // The daemon looks the ident up by its text before the first NUL.
        auto ident = get_fixed_string(command.body);
        require(ident.size() <= command.text.size());
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    auto bytes = fuzz::as_span(data + 1, size - 1);
    daemon::FrameBuffer buffer;
    State state = State::Hello;
    fuzz::for_each_chunk(bytes, data[0], [&](std::span<const std::byte> chunk) {
        if (state == State::Done) return;
        buffer.append(chunk);
        while (state != State::Done) {
            daemon::Frame frame;
            auto status = buffer.next(frame, [&](Header h) {
                return state == State::Hello ? is_hello_header(h) : is_client_command_header(h);
            });
            if (status == daemon::FrameBuffer::Status::NeedMore) return;
            if (status == daemon::FrameBuffer::Status::Rejected) {
                state = State::Done;
                return;
            }
            if (state == State::Hello) {
                require(is_hello_header(frame.header));
                auto checked = check_hello(frame.header, frame.payload, kLocalSocketHello);
                if (!checked.version) {
                    require(checked.peer_version < kClientProtocolVersion);
                    state = State::Done;
                    return;
                }
                require(*checked.version == kClientProtocolVersion);
                state = State::Cmdline;
                continue;
            }
            auto command = decode_client_command(frame.header, frame.payload);
            if (command) {
                check_command(frame, *command);
            } else {
                require(frame.payload.back() != std::byte{0});
            }
            state = State::Done;
        }
    });
    return 0;
}
