#include "agent/service_log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using qrexec::agent::LineSplitter;

namespace {
std::span<const std::byte> bytes(std::string_view text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}
} // namespace

TEST(ServiceLog, OneRecordPerLineAcrossChunks) {
    std::vector<std::string> lines;
    {
        LineSplitter splitter([&](std::string_view line) { lines.emplace_back(line); });
        splitter.feed(bytes("first li"));
        splitter.feed(bytes("ne\nsecond\n\nthird"));
        EXPECT_EQ(lines, (std::vector<std::string>{"first line", "second", ""}));
    }
    // The trailing partial line is emitted when the call ends.
    EXPECT_EQ(lines.back(), "third");
}

TEST(ServiceLog, VeryLongLinesAreCut) {
    std::vector<std::string> lines;
    LineSplitter splitter([&](std::string_view line) { lines.emplace_back(line); });
    std::string big(LineSplitter::kMaxLine + 10, 'x');
    splitter.feed(bytes(big));
    splitter.flush();
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].size(), LineSplitter::kMaxLine);
    EXPECT_EQ(lines[1].size(), 10u);
}
