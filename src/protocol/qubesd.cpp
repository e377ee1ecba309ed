#include "protocol/qubesd.h"

namespace qrexec::protocol {

std::string qubesd_request(std::string_view method, std::string_view arg, std::string_view dest,
                           std::string_view payload) {
    std::string text(method);
    text += '+';
    text += arg;
    if (!dest.empty() && dest.front() == '@') {
        text += " dom0 keyword ";
        text += dest.substr(1);
    } else {
        text += " dom0 name ";
        text += dest;
    }
    text += '\0';
    text += payload;
    return text;
}

QubesdReply parse_qubesd_reply(std::string_view reply) {
    QubesdReply result;
    if (reply.size() >= 2 && reply[0] == '0' && reply[1] == '\0') {
        result.ok = true;
        result.value = std::string(reply.substr(2));
        // A value is a single NUL-free string.
        if (auto nul = result.value.find('\0'); nul != std::string::npos) result.value.resize(nul);
    } else if (reply.size() >= 2 && reply[0] == '2' && reply[1] == '\0') {
        auto rest = reply.substr(2);
        result.exception_type = std::string(rest.substr(0, rest.find('\0')));
    } else {
        result.malformed = true;
        result.exception_type = "(malformed qubesd reply)";
    }
    return result;
}

} // namespace qrexec::protocol
