// MaxStartups-style admission for connection tables (issue 11, weak point 4).
#include "io/admission.h"

#include <gtest/gtest.h>

using qrexec::io::AdmissionTable;

TEST(AdmissionTable, AdmitsWhileThereIsRoom) {
    AdmissionTable table(2);
    auto d = table.decide(1);
    EXPECT_TRUE(d.admit);
    EXPECT_FALSE(d.evict);
}

TEST(AdmissionTable, FullTableEvictsTheOldestIncompleteConnection) {
    AdmissionTable table(3);
    table.opened(10);
    table.opened(11);
    table.opened(12);
    auto d = table.decide(3);
    ASSERT_TRUE(d.admit);
    ASSERT_TRUE(d.evict);
    EXPECT_EQ(*d.evict, 10u);
    table.closed(10);
    table.opened(13);
    EXPECT_EQ(*table.decide(3).evict, 11u);
}

TEST(AdmissionTable, CompletedConnectionsAreNeverEvicted) {
    AdmissionTable table(3);
    table.opened(1);
    table.opened(2);
    table.opened(3);
    table.completed(1);
    table.completed(3);
    EXPECT_EQ(*table.decide(3).evict, 2u);
    table.completed(2);
    auto d = table.decide(3);
    EXPECT_FALSE(d.admit); // all three are real calls in progress
    EXPECT_EQ(table.incomplete(), 0u);
}

TEST(AdmissionTable, AReusedKeyStartsAtTheBackOfTheQueue) {
    AdmissionTable table(2);
    table.opened(5);
    table.opened(6);
    table.closed(5);
    table.opened(5); // fd numbers are reused
    EXPECT_EQ(*table.decide(2).evict, 6u);
    EXPECT_EQ(table.incomplete(), 2u);
}
