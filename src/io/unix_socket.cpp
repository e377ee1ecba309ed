#include "io/unix_socket.h"
#include "io/unix_address.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qrexec::io {

Fd listen_unix(const std::string& path, const ListenOptions& options) {
    std::string temp = path + ".new." + std::to_string(::getpid());
    auto addr = UnixAddress::from_path(temp);
    if (!addr) return {};
    ::unlink(temp.c_str());
    int flags = SOCK_STREAM | SOCK_CLOEXEC | (options.nonblocking ? SOCK_NONBLOCK : 0);
    Fd fd(::socket(AF_UNIX, flags, 0));
    if (!fd) return {};
    mode_t old_mask = options.bind_umask ? ::umask(*options.bind_umask) : 0;
    int rc = ::bind(fd.get(), addr->get(), addr->size());
    int bind_errno = errno;
    if (options.bind_umask) ::umask(old_mask);
    if (rc != 0) {
        errno = bind_errno;
        return {};
    }
    if (::listen(fd.get(), options.backlog) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(temp.c_str());
        errno = err;
        return {};
    }
    return fd;
}

} // namespace qrexec::io
