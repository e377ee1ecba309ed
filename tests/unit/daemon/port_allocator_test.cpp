// DAEMON.md §4.1 port allocation.
#include "daemon/port_allocator.h"

#include <gtest/gtest.h>

using qrexec::daemon::PortAllocator;

TEST(PortAllocator, Dom0UsesEveryIndex) {
    PortAllocator ports(42);
    EXPECT_EQ(ports.allocate(0), 513u);
    EXPECT_EQ(ports.allocate(0), 514u);
    EXPECT_EQ(ports.allocate(0), 515u);
    EXPECT_EQ(ports.in_use(), 3u);
}

TEST(PortAllocator, ParityExampleFromSpec) {
    PortAllocator ports(42);
    EXPECT_EQ(ports.allocate(43), 514u);
    EXPECT_EQ(ports.allocate(44), 516u);
    EXPECT_TRUE(ports.release(43, 514));
    EXPECT_EQ(ports.allocate(44), 514u);
}

TEST(PortAllocator, LowerAndEqualPeersUseEvenIndices) {
    PortAllocator ports(42);
    EXPECT_EQ(ports.allocate(41), 513u);
    EXPECT_EQ(ports.allocate(42), 515u); // a VM calling itself
    EXPECT_EQ(ports.allocate(1), 517u);
}

TEST(PortAllocator, PairOfDaemonsNeverCollide) {
    PortAllocator a(5), b(6);
    for (int i = 0; i < 128; ++i) {
        auto pa = a.allocate(6);
        auto pb = b.allocate(5);
        ASSERT_TRUE(pa && pb);
        EXPECT_NE(*pa, *pb);
        EXPECT_EQ((*pa - 513) % 2, 1u);
        EXPECT_EQ((*pb - 513) % 2, 0u);
    }
    EXPECT_FALSE(a.allocate(6));
    EXPECT_FALSE(b.allocate(5));
    // dom0 can still use the other half.
    EXPECT_EQ(a.allocate(0), 513u);
}

TEST(PortAllocator, ReleaseOnlyWithMatchingDomain) {
    PortAllocator ports(5);
    auto p = ports.allocate(0);
    ASSERT_TRUE(p);
    EXPECT_FALSE(ports.release(7, *p));
    EXPECT_EQ(ports.peer_of(*p), 0u);
    EXPECT_TRUE(ports.release(0, *p));
    EXPECT_FALSE(ports.release(0, *p)); // already free
    EXPECT_FALSE(ports.peer_of(*p));
    EXPECT_FALSE(ports.release(0, 512));
    EXPECT_FALSE(ports.release(0, 769));
}

TEST(PortAllocator, ExhaustionAndRange) {
    PortAllocator ports(5);
    for (uint32_t i = 0; i < 256; ++i)
        EXPECT_EQ(ports.allocate(0), 513 + i);
    EXPECT_FALSE(ports.allocate(0));
    EXPECT_FALSE(ports.allocate(9));
    EXPECT_TRUE(PortAllocator::in_range(513));
    EXPECT_TRUE(PortAllocator::in_range(768));
    EXPECT_FALSE(PortAllocator::in_range(512));
    EXPECT_FALSE(PortAllocator::in_range(769));
    EXPECT_FALSE(PortAllocator::in_range(0));
}

TEST(PortAllocator, CountsPortsHeldPerPeer) {
    PortAllocator ports(42);
    ports.allocate(7);
    ports.allocate(7);
    ports.allocate(0);
    EXPECT_EQ(ports.held_by(7), 2u);
    EXPECT_EQ(ports.held_by(0), 1u);
    EXPECT_EQ(ports.held_by(8), 0u);
}
