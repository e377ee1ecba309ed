#include "io/fd_limit.h"

#include "in_child.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace qrexec::io;
using qrexec::io::fixtures::in_child;

namespace {

rlim_t soft_limit(pid_t pid = 0) {
    rlimit limit{};
    ::prlimit(pid, RLIMIT_NOFILE, nullptr, &limit);
    return limit.rlim_cur;
}

bool set_limits(rlim_t soft, rlim_t hard) {
    rlimit limit{soft, hard};
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

} // namespace

TEST(FdLimit, RaisesTheSoftLimitAndReturnsTheOldOne) {
    EXPECT_EQ(in_child([] {
                  if (!set_limits(100, 300)) return 1;
                  auto old = raise_soft_fd_limit(200);
                  if (!old || *old != 100) return 2;
                  if (soft_limit() != 200) return 3;
                  if (!set_soft_fd_limit(*old) || soft_limit() != 100) return 4; // and back
                  return 0;
              }),
              0);
}

TEST(FdLimit, StopsAtTheHardLimitAndNeverLowers) {
    EXPECT_EQ(in_child([] {
                  if (!set_limits(100, 150)) return 1;
                  auto old = raise_soft_fd_limit(8192);
                  if (!old || *old != 100 || soft_limit() != 150) return 2;
                  // Already there: nothing to give back.
                  if (raise_soft_fd_limit(120) || soft_limit() != 150) return 3;
                  return 0;
              }),
              0);
}

TEST(FdLimit, GivesAChildTheOldSoftLimitBack) {
    EXPECT_EQ(in_child([] {
                  if (!set_limits(100, 300)) return 1;
                  auto old = raise_soft_fd_limit(250);
                  if (!old) return 2;
                  pid_t child = ::fork();
                  if (child == 0) {
                      ::pause();
                      _exit(0);
                  }
                  if (soft_limit(child) != 250) return 3;
                  restore_soft_fd_limit(child, *old);
                  rlim_t seen = soft_limit(child);
                  ::kill(child, SIGKILL);
                  ::waitpid(child, nullptr, 0);
                  if (seen != 100) return 4;
                  if (soft_limit() != 250) return 5;  // ours stays raised
                  restore_soft_fd_limit(child, *old); // gone: ESRCH, quietly
                  return 0;
              }),
              0);
}
