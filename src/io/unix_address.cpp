#include "io/unix_address.h"

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace qrexec::io {

std::optional<UnixAddress> UnixAddress::from_path(std::string_view path) {
    if (path.empty() || path.find('\0') != std::string_view::npos) {
        errno = EINVAL;
        return std::nullopt;
    }
    UnixAddress address;
    if (path.size() >= sizeof address.addr_.sun_path) {
        errno = ENAMETOOLONG;
        return std::nullopt;
    }
    address.addr_.sun_family = AF_UNIX;
    std::memcpy(address.addr_.sun_path, path.data(), path.size());
    address.size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return address;
}

std::optional<UnixAddress> UnixAddress::from_path_or_abstract(std::string_view path) {
    if (path.empty() || path.front() != '@') return from_path(path);
    // Abstract: a leading NUL, then the name; the length says where it ends.
    auto address = from_path(path);
    if (!address) return std::nullopt;
    address->addr_.sun_path[0] = '\0';
    address->size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    return address;
}

} // namespace qrexec::io
