// Xen backend of the vchan interface, on Xen's libxenvchan, with the
// conventions of Qubes' vchan-xen wrapper (VCHAN.md §3): the server publishes
// its rings under data/vchan/<peer>/<port> of its own xenstore directory, the
// client waits (xenstore watch, with a deadline) for
// /local/domain/<server>/data/vchan/<own>/<port>/event-channel, loopback is
// refused, the local domain id is xenstore's "domid", and the server removes
// its xenstore entry once the client is connected.
//
// The callers' event loops need a level-triggered fd that is readable while
// data is buffered and writable while there is room; a libxenvchan event
// channel is neither (its events are consumed by libxenvchan_wait). So each
// connected channel is a socketpair: the caller gets one end as an ordinary
// non-blocking stream, and a pump thread (all signals blocked) moves bytes
// between the other end and the vchan. Closing the caller's end flushes what
// is still queued into the vchan (a final EXIT_CODE is delivered) before the
// vchan is closed; the peer closing the vchan gives the caller EOF once every
// byte it sent has been read, and makes the caller's writes fail (EPIPE).
#pragma once

#include "transport/vchan.h"

#include <string>

namespace qrexec::transport {

// The xenstore paths of the Qubes convention (relative = under the server's own
// /local/domain/<own>).
std::string xen_server_path(int peer_domain, int port);
std::string xen_client_path(int server_domain, int own_domain, int port);

class XenBackend final : public Backend {
  public:
    // Reads the local domain id from xenstore; throws std::runtime_error if it cannot.
    XenBackend();
    int own_domain() const override { return own_domain_; }
    std::unique_ptr<PendingServer> listen(int peer_domain, int port, size_t ring_size) override;
    std::unique_ptr<Channel> connect(int peer_domain, int port, int timeout_ms) override;

  private:
    int own_domain_ = -1;
};

} // namespace qrexec::transport
