// qubesd's Admin API wire format (DAEMON.md §5.5), used by the one qubesd
// client (src/qubesd/client.h):
//   request: "<method>+<arg> dom0 name <dest>\0<payload>" ("dom0 keyword
//            <dest without @>" when dest starts with '@'), then shutdown(SHUT_WR);
//   reply:   "0\0<value>" on success, "2\0<exception type>\0..." on error.
#pragma once

#include <string>
#include <string_view>

namespace qrexec::protocol {

std::string qubesd_request(std::string_view method, std::string_view arg, std::string_view dest,
                           std::string_view payload);

struct QubesdReply {
    bool ok = false;
    bool malformed = false;     // neither "0\0" nor "2\0"
    std::string value;          // after "0\0" on success
    std::string exception_type; // after "2\0" on error ("(malformed qubesd reply)" if malformed)
};
QubesdReply parse_qubesd_reply(std::string_view reply);

} // namespace qrexec::protocol
