#include "services/tcp.h"

#include "io/log.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace qrexec::services {
namespace {

std::optional<TcpTarget> tcp_fail(std::string* error, std::string message) {
    if (error) *error = std::move(message);
    return std::nullopt;
}

// Decimal 1..65535 without leading zeros.
std::optional<uint16_t> parse_port(std::string_view text) {
    if (text.empty() || text.size() > 5 || text.front() == '0') return std::nullopt;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value < 1 || value > 65535) return std::nullopt;
    return static_cast<uint16_t>(value);
}

std::optional<TcpTarget> make_target(std::string host, std::string_view port_text,
                                     std::string* error) {
    if (host.empty()) return tcp_fail(error, "TCP service: empty host");
    auto port = parse_port(port_text);
    if (!port) return tcp_fail(error, "TCP service: invalid port '" + std::string(port_text) + "'");
    return TcpTarget{std::move(host), *port};
}

} // namespace

std::optional<TcpTarget> parse_tcp_target(std::string_view symlink_target,
                                          const std::optional<std::string>& argument,
                                          std::string* error) {
    std::string_view arg = argument ? std::string_view(*argument) : std::string_view();
    if (symlink_target == kDevTcp) {
        // Everything comes from the argument: HOST+PORT, split at the last '+'.
        auto plus = arg.rfind('+');
        if (arg.empty() || plus == std::string_view::npos)
            return tcp_fail(error, "TCP service: argument must be HOST+PORT");
        std::string host(arg.substr(0, plus));
        if (host.find('_') != std::string::npos) return tcp_fail(error, "TCP service: '_' in host");
        for (char& c : host)
            if (c == '+') c = ':'; // IPv6 colons cannot appear in a service argument
        return make_target(std::move(host), arg.substr(plus + 1), error);
    }
    if (!symlink_target.starts_with("/dev/tcp/"))
        return tcp_fail(error, "TCP service: bad symlink target");
    std::string_view rest = symlink_target.substr(kDevTcp.size() + 1);
    if (rest.empty()) return tcp_fail(error, "TCP service: symlink target /dev/tcp/ has no host");
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) {
        if (arg.empty()) return tcp_fail(error, "TCP service: the argument must be the port");
        return make_target(std::string(rest), arg, error);
    }
    if (!arg.empty())
        return tcp_fail(error, "TCP service: no argument allowed with /dev/tcp/HOST/PORT");
    return make_target(std::string(rest.substr(0, slash)), rest.substr(slash + 1), error);
}

io::Fd connect_tcp(const TcpTarget& target, std::string* error) {
    addrinfo hints{};
    bool v6 = target.host.find_first_of(":%") != std::string::npos;
    hints.ai_family = v6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* list = nullptr;
    std::string port = std::to_string(target.port);
    int rc = getaddrinfo(target.host.c_str(), port.c_str(), &hints, &list);
    if (rc != 0) {
        if (error) *error = "TCP service: invalid host '" + target.host + "': " + gai_strerror(rc);
        return {};
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(list, freeaddrinfo);
    io::Fd fd(socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        if (error) *error = "TCP service: socket: " + io::errno_text(errno);
        return {};
    }
    if (connect(fd.get(), list->ai_addr, list->ai_addrlen) != 0) {
        if (error)
            *error = "TCP service: connect to " + target.host + " port " + port + ": " +
                     io::errno_text(errno);
        return {};
    }
    return fd;
}

} // namespace qrexec::services
