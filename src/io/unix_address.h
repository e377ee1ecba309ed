// The one way to build an AF_UNIX socket address from a path: the length is
// checked (the path and its NUL must fit sun_path), so no caller fills
// sockaddr_un by hand.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <optional>
#include <string_view>

namespace qrexec::io {

class UnixAddress {
  public:
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr_); }
    socklen_t size() const { return size_; }

    // nullopt (errno = ENAMETOOLONG, or EINVAL for an empty path or one with a
    // NUL in it) when the path cannot be a socket path.
    static std::optional<UnixAddress> from_path(std::string_view path);
    // Like from_path, but a leading '@' names the abstract namespace (the
    // convention of systemd's NOTIFY_SOCKET).
    static std::optional<UnixAddress> from_path_or_abstract(std::string_view path);

  private:
    UnixAddress() = default;
    sockaddr_un addr_{};
    socklen_t size_ = 0;
};

} // namespace qrexec::io
