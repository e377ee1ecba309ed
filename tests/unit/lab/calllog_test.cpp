#include "lab/calllog.h"

#include <gtest/gtest.h>

namespace qrexec::lab {
namespace {

CallRecord call(double t, const std::string& svc) {
    CallRecord r;
    r.time = t;
    r.source = "work";
    r.target = "personal";
    r.service = svc;
    r.decision = "allow";
    r.exit_status = 0;
    r.bytes_in = 5;
    r.bytes_out = 7;
    r.duration = 0.25;
    r.via = "qrexec-lab call";
    return r;
}

TEST(CallLog, JsonRoundTrip) {
    CallRecord r = call(1000.5, "demo.Echo+x");
    r.decided_by = "30-lab.policy:4";
    r.detail = "asked";
    auto back = record_from_json(record_to_json(r));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->service, "demo.Echo+x");
    EXPECT_EQ(back->decided_by, "30-lab.policy:4");
    EXPECT_EQ(back->exit_status, 0);
    EXPECT_EQ(back->bytes_in, 5);
    EXPECT_EQ(back->bytes_out, 7);
    EXPECT_DOUBLE_EQ(*back->duration, 0.25);
    EXPECT_EQ(back->detail, "asked");
}

TEST(CallLog, UnknownFieldsMissingAsDash) {
    auto r = record_from_json(R"({"kind":"policy","time":5,"source":"a","service":"s"})");
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->exit_status);
    std::string line = format_record(*r);
    EXPECT_NE(line.find(" - "), std::string::npos);
    EXPECT_NE(line.find("@default"), std::string::npos); // empty target
}

TEST(CallLog, GarbageIsSkipped) {
    EXPECT_FALSE(record_from_json("not json"));
    EXPECT_FALSE(record_from_json("[1,2]"));
    EXPECT_FALSE(record_from_json(R"({"time":"x"})"));
}

TEST(CallLog, TapRecordMergedIntoWrappedCall) {
    CallRecord c = call(100.0, "demo.Echo");
    c.decision = "allow";
    CallRecord tap;
    tap.kind = "policy";
    tap.time = 100.01;
    tap.source = "work";
    tap.target = "personal";
    tap.service = "demo.Echo+";
    tap.decision = "ask:allow";
    tap.decided_by = "30-lab.policy:9";
    CallRecord other = tap;
    other.source = "personal";
    auto merged = merge_records({tap, other, c});
    ASSERT_EQ(merged.size(), 2u);
    EXPECT_EQ(merged[0].kind, "call"); // sorted by start time
    EXPECT_EQ(merged[0].decision, "ask:allow");
    EXPECT_EQ(merged[0].decided_by, "30-lab.policy:9");
    EXPECT_EQ(merged[1].source, "personal");
}

TEST(CallLog, TapOutsideCallWindowStays) {
    CallRecord c = call(100.0, "demo.Echo");
    CallRecord tap;
    tap.kind = "policy";
    tap.time = 200.0;
    tap.source = "work";
    tap.service = "demo.Echo";
    EXPECT_EQ(merge_records({c, tap}).size(), 2u);
}

TEST(CallLog, EventLine) {
    CallRecord e;
    e.kind = "event";
    e.time = 10;
    e.component = "agent:work";
    e.detail = "killed by signal 9";
    std::string line = format_record(e);
    EXPECT_NE(line.find("** agent:work: killed by signal 9"), std::string::npos);
}

} // namespace
} // namespace qrexec::lab
