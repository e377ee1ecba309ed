// Listening AF_UNIX stream sockets that are usable the moment their path exists.
#pragma once

#include "io/fd.h"

#include <sys/types.h>

#include <optional>
#include <string>

namespace qrexec::io {

struct ListenOptions {
    int backlog = 5;
    bool nonblocking = true;
    // umask while binding (e.g. 0 for a world-accessible socket); nullopt keeps ours.
    std::optional<mode_t> bind_umask;
};

// Binds and listens under a temporary name next to `path`, then renames it into
// place: a client that sees the path can connect at once (there is no window
// between bind and listen where it would be refused). Replaces a stale socket.
// Returns an invalid Fd (errno set) on failure.
Fd listen_unix(const std::string& path, const ListenOptions& options = {});

} // namespace qrexec::io
