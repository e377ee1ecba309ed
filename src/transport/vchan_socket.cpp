// default_backend() of the socket build (QREXEC_VCHAN=socket): the vchan-socket
// emulation, configured from VCHAN_DOMAIN / VCHAN_SOCKET_DIR. Each backend's
// default_backend() is its own object, so a program can be linked with either
// (cmake/QrexecTransportVariants.cmake).
#include "transport/socket_backend.h"

namespace qrexec::transport {

std::unique_ptr<Backend> default_backend() {
    return std::make_unique<SocketBackend>(SocketBackendConfig::from_environment());
}

} // namespace qrexec::transport
