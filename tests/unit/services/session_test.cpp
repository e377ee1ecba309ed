#include "services/session.h"

#include "test_util.h"

#include <gtest/gtest.h>

using namespace qrexec::services;
using qrexec::services::fixtures::TempDir;
namespace io = qrexec::io;

TEST(Session, AgentVariantReadsUserAndSeesSource) {
    TempDir t;
    auto out = t.sub("out");
    t.write("qubes.WaitForSession",
            "#!/bin/sh\nread user\necho \"$user $QREXEC_REMOTE_DOMAIN\" > " + out + "\n", 0755);
    auto pipe = io::make_pipe();
    auto child = spawn_wait_for_session({t.path()}, "work", pipe.first.get());
    pipe.first.reset();
    ASSERT_TRUE(io::write_all(pipe.second.get(), std::string_view("alice\n")));
    pipe.second.reset();
    EXPECT_EQ(child.wait(), 0);
    std::ifstream in(out);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "alice work");
}

TEST(Session, MissingServiceExits1) {
    TempDir t;
    auto pipe = io::make_pipe();
    auto child = spawn_wait_for_session({t.path()}, "work", pipe.first.get());
    EXPECT_EQ(child.wait(), 1);
}

TEST(Session, SyncVariantStdinAtEof) {
    TempDir t;
    auto out = t.sub("out");
    t.write("qubes.WaitForSession",
            "#!/bin/sh\nif read x; then r=data; else r=eof; fi\necho \"$r "
            "$QREXEC_REMOTE_DOMAIN\" > " +
                out + "\nexit 3\n",
            0755);
    run_wait_for_session_sync({t.path()}, "vm1");
    std::ifstream in(out);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "eof vm1");
    run_wait_for_session_sync({t.sub("none")}, "vm1"); // missing: ignored
}
