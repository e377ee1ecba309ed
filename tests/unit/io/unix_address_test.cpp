#include "io/fd.h"
#include "io/unix_address.h"
#include "io/unix_socket.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

using namespace qrexec::io;

TEST(UnixAddress, ThePathAndItsNulMustFit) {
    std::string longest(sizeof(sockaddr_un::sun_path) - 1, 'a');
    auto fits = UnixAddress::from_path(longest);
    ASSERT_TRUE(fits);
    EXPECT_EQ(fits->size(), offsetof(sockaddr_un, sun_path) + longest.size() + 1);
    errno = 0;
    EXPECT_FALSE(UnixAddress::from_path(longest + "a"));
    EXPECT_EQ(errno, ENAMETOOLONG);
}

TEST(UnixAddress, RejectsEmptyPathsAndEmbeddedNuls) {
    errno = 0;
    EXPECT_FALSE(UnixAddress::from_path(""));
    EXPECT_EQ(errno, EINVAL);
    EXPECT_FALSE(UnixAddress::from_path(std::string_view("/tmp/a\0b", 8)));
}

TEST(UnixAddress, AbstractNamesOnlyWhenAsked) {
    auto plain = UnixAddress::from_path("@notify");
    ASSERT_TRUE(plain);
    EXPECT_EQ(reinterpret_cast<const sockaddr_un*>(plain->get())->sun_path[0], '@');
    auto abstract = UnixAddress::from_path_or_abstract("@notify");
    ASSERT_TRUE(abstract);
    EXPECT_EQ(reinterpret_cast<const sockaddr_un*>(abstract->get())->sun_path[0], '\0');
    EXPECT_EQ(abstract->size(), offsetof(sockaddr_un, sun_path) + 7);
}

TEST(UnixAddress, ConnectsToARealSocket) {
    char dir[] = "/tmp/qrexec-unix-address-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string path = std::string(dir) + "/sock";
    Fd listener = listen_unix(path);
    ASSERT_TRUE(listener);
    auto addr = UnixAddress::from_path(path);
    ASSERT_TRUE(addr);
    Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(client.get(), addr->get(), addr->size()), 0);
    ::unlink(path.c_str());
    ::rmdir(dir);
}
