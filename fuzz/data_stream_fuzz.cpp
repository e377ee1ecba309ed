// Hostile bytes on a data vchan (the peer VM of a call controls them): the
// engine must end the call cleanly, never crash or hang.
// Build: CXX=clang++ cmake -S . -B build-fuzz -DQREXEC_FUZZ=ON && ninja -C build-fuzz
// data_stream_fuzz Run:   build-fuzz/data_stream_fuzz -max_len=65536 -timeout=5
#include "fuzz_util.h"
#include "io/fd.h"
#include "protocol/frame.h"
#include "stream/engine.h"
#include "transport/socket_backend.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

using namespace qrexec;
using fuzz::require;

namespace {

// Local fds that never block the engine: an input already at EOF and /dev/null.
stream::LocalFd input_at_eof() {
    auto pipe = io::make_pipe();
    pipe.second.reset();
    return {pipe.first.release(), stream::CloseMethod::Close};
}

stream::LocalFd dev_null() {
    return {::open("/dev/null", O_WRONLY | O_CLOEXEC), stream::CloseMethod::Close};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    bool service = data[0] & 1;
    uint32_t version = (data[0] & 2) ? 2 : 4;
    auto pair = io::make_socketpair();
    // The peer's bytes are all there, then it stops writing (it keeps reading).
    io::write_all(pair.second.get(),
                  std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1));
    ::shutdown(pair.second.get(), SHUT_WR);
    auto channel = transport::make_socket_channel(std::move(pair.first));

    stream::EngineConfig config;
    config.role = service ? stream::Role::Service : stream::Role::Client;
    config.version = version;
    config.input = input_at_eof();
    config.output = dev_null();
    config.error = service ? input_at_eof() : dev_null();
    auto result = stream::run_engine(*channel, std::move(config), nullptr);

    // Invariants, from an independent walk of the same bytes with the frame
    // assembler: a client reports the first EXIT_CODE that came before any
    // bad frame; an oversized or unknown frame before it is a protocol error
    // and no exit code. (A service may end before reading everything.)
    auto bytes = std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1);
    size_t max_chunk = protocol::max_chunk_for_version(version);
    std::optional<int> first_exit;
    bool bad_frame = false;
    for (size_t off = 0;;) {
        auto frame = protocol::next_frame(bytes.subspan(off), max_chunk);
        if (frame.status == protocol::FrameStatus::TooLong) {
            bad_frame = true;
            break;
        }
        if (frame.status != protocol::FrameStatus::Ready) break;
        uint32_t type = frame.header->type;
        bool known = type == protocol::MSG_DATA_STDIN || type == protocol::MSG_DATA_STDOUT ||
                     type == protocol::MSG_DATA_STDERR || type == protocol::MSG_DATA_EXIT_CODE;
        if (!known) {
            bad_frame = true;
            break;
        }
        if (!service && type == protocol::MSG_DATA_EXIT_CODE) {
            first_exit = protocol::decode_exit_code(frame.untrusted_payload);
            break;
        }
        off += frame.size;
    }
    if (!service) {
        if (first_exit)
            require(result.exit_code == first_exit);
        else if (bad_frame)
            require(result.protocol_error && !result.exit_code);
        else
            require(!result.exit_code);
    }
    return 0;
}
