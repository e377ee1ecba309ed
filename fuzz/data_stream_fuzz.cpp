// Hostile bytes on a data vchan (the peer VM of a call controls them): the
// engine must end the call cleanly, never crash or hang.
// Build: CXX=clang++ cmake -S . -B build-fuzz -DQREXEC_FUZZ=ON && ninja -C build-fuzz
// data_stream_fuzz Run:   build-fuzz/data_stream_fuzz -max_len=65536 -timeout=5
#include "io/fd.h"
#include "stream/engine.h"
#include "transport/socket_backend.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

using namespace qrexec;

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
    stream::run_engine(*channel, std::move(config), nullptr);
    return 0;
}
