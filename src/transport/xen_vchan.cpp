// default_backend() of the Xen build (QREXEC_VCHAN=xen): libxenvchan.
#include "transport/xen_backend.h"

namespace qrexec::transport {

std::unique_ptr<Backend> default_backend() {
    return std::make_unique<XenBackend>();
}

} // namespace qrexec::transport
