#include "services/prepare.h"

#include "io/log.h"
#include "io/unix_address.h"
#include "protocol/messages.h"
#include "services/tcp.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace qrexec::services {
namespace {

using protocol::kExitNotFound;
using protocol::kExitProblem;

PrepareResult failure(int code) {
    PrepareResult result;
    result.failure = code;
    return result;
}

PrepareResult success(PreparedCall call) {
    PrepareResult result;
    result.call = std::move(call);
    return result;
}

io::Fd connect_short_path(const std::string& path, std::string* error, int* error_number) {
    auto addr = io::UnixAddress::from_path(path);
    if (!addr) {
        if (error_number) *error_number = errno;
        if (error) *error = "socket path " + path + ": " + io::errno_text(errno);
        return {};
    }
    io::Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        if (error) *error = "socket: " + io::errno_text(errno);
        return {};
    }
    if (connect(fd.get(), addr->get(), addr->size()) != 0) {
        if (error_number) *error_number = errno;
        if (error) *error = "connect to " + path + ": " + io::errno_text(errno);
        return {};
    }
    return fd;
}

// Removes the temporary symlink directory however the connect ends.
class TempLinkDir {
  public:
    bool create() {
        char templ[] = "/tmp/qrexec-XXXXXX";
        if (!mkdtemp(templ)) return false;
        dir_ = templ;
        return true;
    }
    std::string link_path() const { return dir_ + "/s"; }
    ~TempLinkDir() {
        if (dir_.empty()) return;
        unlink(link_path().c_str());
        rmdir(dir_.c_str());
    }

  private:
    std::string dir_;
};

bool send_header(int fd, const std::string& header) {
    std::string data = header;
    data.push_back('\0');
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

PrepareResult finish_socket_call(PreparedCall call, const ParsedCommand& command) {
    if (!call.config.skip_service_descriptor &&
        !send_header(call.socket.get(), command.service_header)) {
        QLOG_ERRNO("Failed to send the service header to {}", call.path);
        return failure(kExitProblem);
    }
    return success(std::move(call));
}

} // namespace

io::Fd connect_unix_socket(const std::string& path, std::string* error, int* error_number) {
    if (path.size() < sizeof(sockaddr_un::sun_path))
        return connect_short_path(path, error, error_number);
    TempLinkDir temp;
    if (!temp.create()) {
        if (error) *error = "mkdtemp: " + io::errno_text(errno);
        return {};
    }
    if (symlink(path.c_str(), temp.link_path().c_str()) != 0) {
        if (error) *error = "symlink: " + io::errno_text(errno);
        return {};
    }
    return connect_short_path(temp.link_path(), error, error_number);
}

std::string effective_user(const ParsedCommand& command, const RpcConfig& config) {
    return config.force_user ? *config.force_user : command.username;
}

PrepareResult prepare_call(const ParsedCommand& command, const SearchPaths& paths,
                           bool load_config) {
    if (!command.is_service || !load_config) return prepare_call(command, paths, RpcConfig{});
    ConfigLoad load = load_rpc_config(paths.config_dirs, command);
    if (!load.ok) {
        QLOG("{}", load.error);
        return failure(kExitProblem);
    }
    return prepare_call(command, paths, load.config);
}

PrepareResult prepare_call(const ParsedCommand& command, const SearchPaths& paths,
                           const RpcConfig& config) {
    PreparedCall call;
    call.config = config;
    if (!command.is_service) {
        call.kind = CallKind::ShellCommand;
        return success(std::move(call));
    }
    ServiceLookup lookup = find_service(paths.service_dirs, command);
    if (lookup.status == LookupStatus::NotFound) {
        QLOG("Service not found: {}", command.descriptor);
        return failure(kExitNotFound);
    }
    if (lookup.status == LookupStatus::Error) {
        QLOG("Error looking up service {}", command.descriptor);
        return failure(kExitProblem);
    }
    call.path = lookup.path;
    std::string error;
    switch (lookup.kind) {
    case ServiceKind::Socket:
        call.kind = CallKind::Socket;
        call.socket = connect_unix_socket(lookup.path, &error);
        if (!call.socket) {
            QLOG("Failed to connect to service socket: {}", error);
            return failure(kExitProblem);
        }
        return finish_socket_call(std::move(call), command);
    case ServiceKind::Tcp: {
        call.kind = CallKind::Tcp;
        auto target = parse_tcp_target(lookup.tcp_target, command.argument, &error);
        if (target) call.socket = connect_tcp(*target, &error);
        if (!call.socket) {
            QLOG("{}", error);
            return failure(kExitProblem);
        }
        return finish_socket_call(std::move(call), command);
    }
    case ServiceKind::Executable:
        call.kind = CallKind::Executable;
        if (config.exit_on_client_eof || config.exit_on_service_eof)
            QLOG("Warning: exit-on-*-eof is ignored for executable service {}", lookup.path);
        if (config.skip_service_descriptor)
            QLOG("Warning: skip-service-descriptor is ignored for executable service {}",
                 lookup.path);
        return success(std::move(call));
    case ServiceKind::Other:
        break;
    }
    QLOG("Service {} is neither executable nor a socket", lookup.path);
    return failure(kExitProblem);
}

} // namespace qrexec::services
