#include "services/tcp.h"

#include "io/log.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
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

namespace {

// A numeric IPv4 or IPv6 address (IPv6 with an optional %SCOPE, a number or an
// interface name). Parsed here rather than by getaddrinfo(AI_NUMERICHOST): the
// answer is the same, but getaddrinfo drags the name service into every program
// that links this file, and the static callers must not reach it.
std::optional<sockaddr_storage> numeric_address(const std::string& host, uint16_t port,
                                                socklen_t* length) {
    sockaddr_storage address{};
    if (host.find(':') == std::string::npos) {
        // inet_aton, as getaddrinfo: the shorthand forms (127.1, 0x7f.0.0.1) stay
        // valid. It would stop at white space and accept the rest: refuse it first.
        auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
        for (char c : host)
            if (std::isspace(static_cast<unsigned char>(c))) return std::nullopt;
        if (inet_aton(host.c_str(), &v4->sin_addr) == 0) return std::nullopt;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *length = sizeof(sockaddr_in);
        return address;
    }
    auto percent = host.find('%');
    std::string bare = host.substr(0, percent);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (inet_pton(AF_INET6, bare.c_str(), &v6->sin6_addr) != 1) return std::nullopt;
    if (percent != std::string::npos) {
        std::string scope = host.substr(percent + 1);
        if (scope.empty()) return std::nullopt;
        if (scope.find_first_not_of("0123456789") == std::string::npos) {
            if (scope.size() > 10) return std::nullopt;
            unsigned long id = std::stoul(scope);
            if (id > UINT32_MAX) return std::nullopt;
            v6->sin6_scope_id = static_cast<uint32_t>(id);
        } else {
            v6->sin6_scope_id = if_nametoindex(scope.c_str());
            if (v6->sin6_scope_id == 0) return std::nullopt;
        }
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *length = sizeof(sockaddr_in6);
    return address;
}

} // namespace

io::Fd connect_tcp(const TcpTarget& target, std::string* error) {
    socklen_t length = 0;
    auto address = numeric_address(target.host, target.port, &length);
    if (!address) {
        if (error)
            *error = "TCP service: invalid host '" + target.host + "': not a numeric address";
        return {};
    }
    std::string port = std::to_string(target.port);
    io::Fd fd(socket(address->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        if (error) *error = "TCP service: socket: " + io::errno_text(errno);
        return {};
    }
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*address), length) != 0) {
        if (error)
            *error = "TCP service: connect to " + target.host + " port " + port + ": " +
                     io::errno_text(errno);
        return {};
    }
    return fd;
}

} // namespace qrexec::services
