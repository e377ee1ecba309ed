#include "protocol/qubesd.h"

#include <gtest/gtest.h>

using namespace qrexec::protocol;
using namespace std::string_literals;

TEST(Qubesd, RequestNamesOrKeywords) {
    EXPECT_EQ(qubesd_request("admin.vm.Start", "", "work", ""),
              "admin.vm.Start+ dom0 name work\0"s);
    EXPECT_EQ(qubesd_request("admin.vm.CreateDisposable", "", "@dispvm", "uuid"),
              "admin.vm.CreateDisposable+ dom0 keyword dispvm\0uuid"s);
    EXPECT_EQ(qubesd_request("internal.GetSystemInfo", "x", "dom0", ""),
              "internal.GetSystemInfo+x dom0 name dom0\0"s);
}

TEST(Qubesd, RepliesSuccessErrorAndGarbage) {
    auto ok = parse_qubesd_reply("0\0disp42\0junk"s);
    EXPECT_TRUE(ok.ok);
    EXPECT_EQ(ok.value, "disp42");
    auto error = parse_qubesd_reply("2\0QubesVMNotHaltedError\0traceback"s);
    EXPECT_FALSE(error.ok);
    EXPECT_FALSE(error.malformed);
    EXPECT_EQ(error.exception_type, "QubesVMNotHaltedError");
    auto garbage = parse_qubesd_reply("hello");
    EXPECT_FALSE(garbage.ok);
    EXPECT_TRUE(garbage.malformed);
    EXPECT_TRUE(parse_qubesd_reply("").malformed);
}
