// io/trace: one whole line per stage, appended to $QREXEC_TRACE.
#include "io/trace.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

using namespace qrexec::io;

TEST(Trace, VchanTokenIsTheSameFromBothEnds) {
    EXPECT_EQ(trace_vchan_token(3, 1, 513), "vchan:1-3-513");
    EXPECT_EQ(trace_vchan_token(1, 3, 513), trace_vchan_token(3, 1, 513));
}

namespace {
// The sink is opened once per process, on first use, which any test of this
// binary may make (close_fds_from asks for the trace fd): so the variable is
// set before main() runs, whatever order the tests run in.
struct TraceFile {
    char path[64] = "/tmp/qrexec-trace-test-XXXXXX";
    bool made = false;
    TraceFile() {
        int fd = mkstemp(path);
        if (fd < 0) return;
        close(fd);
        made = true;
        setenv("QREXEC_TRACE", path, 1);
    }
    ~TraceFile() {
        if (made) unlink(path);
    }
};
const TraceFile g_trace_file;
} // namespace

TEST(Trace, WritesOneLinePerStageWithTimeProgramAndPid) {
    ASSERT_TRUE(g_trace_file.made);
    const char* path = g_trace_file.path;
    ASSERT_TRUE(trace_on());
    trace_line("first", "+cvm:1 k=v");
    trace_line("second", "cvm:1");
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::regex line(R"((\d{16}) (\S+)\[(\d+)\] (\S+) (.*))");
    std::istringstream lines(text.str());
    std::string l1, l2, extra;
    ASSERT_TRUE(std::getline(lines, l1));
    ASSERT_TRUE(std::getline(lines, l2));
    EXPECT_FALSE(std::getline(lines, extra));
    std::smatch m1, m2;
    ASSERT_TRUE(std::regex_match(l1, m1, line)) << l1;
    ASSERT_TRUE(std::regex_match(l2, m2, line)) << l2;
    EXPECT_EQ(m1[3].str(), std::to_string(getpid()));
    EXPECT_EQ(m1[4].str(), "first");
    EXPECT_EQ(m1[5].str(), "+cvm:1 k=v");
    EXPECT_EQ(m2[4].str(), "second");
    EXPECT_LE(std::stoull(m1[1].str()), std::stoull(m2[1].str()));
}
