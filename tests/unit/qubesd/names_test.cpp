#include "qubesd/names.h"

#include <string>

#include <gtest/gtest.h>

using namespace qrexec::qubesd;

TEST(VmName, QubesdsRule) {
    EXPECT_TRUE(is_vm_name("work"));
    EXPECT_TRUE(is_vm_name("disp1234"));
    EXPECT_TRUE(is_vm_name("Vault_2.old-x"));
    EXPECT_TRUE(is_vm_name("dom0"));
    EXPECT_TRUE(is_vm_name(std::string(31, 'a')));

    EXPECT_FALSE(is_vm_name(""));
    EXPECT_FALSE(is_vm_name(std::string(32, 'a')));
    EXPECT_FALSE(is_vm_name("a/b"));
    EXPECT_FALSE(is_vm_name("-work"));
    EXPECT_FALSE(is_vm_name("1work"));
    EXPECT_FALSE(is_vm_name("_work"));
    EXPECT_FALSE(is_vm_name("."));
    EXPECT_FALSE(is_vm_name(".."));
    EXPECT_FALSE(is_vm_name("w\xc3\xb6rk")); // "wörk"
    EXPECT_FALSE(is_vm_name("work\n"));
    EXPECT_FALSE(is_vm_name(std::string("wo\0rk", 5)));
    EXPECT_FALSE(is_vm_name("wo rk"));
    EXPECT_FALSE(is_vm_name("@dispvm"));
    EXPECT_FALSE(is_vm_name("uuid:x"));
    EXPECT_FALSE(is_vm_name("none"));
    EXPECT_FALSE(is_vm_name("default"));
    EXPECT_FALSE(is_vm_name("work-dm"));
}

TEST(VmUuid, CanonicalOnly) {
    EXPECT_TRUE(is_vm_uuid("uuid:0123abcd-4567-89ef-0123-456789abcdef"));
    EXPECT_FALSE(is_vm_uuid("0123abcd-4567-89ef-0123-456789abcdef"));
    EXPECT_FALSE(is_vm_uuid("uuid:0123ABCD-4567-89ef-0123-456789abcdef"));
    EXPECT_FALSE(is_vm_uuid("uuid:0123abcd-4567-89ef-0123-456789abcde"));
    EXPECT_FALSE(is_vm_uuid("uuid:0123abcd-4567-89ef-0123-456789abcdef0"));
    EXPECT_FALSE(is_vm_uuid("uuid:0123abcd4-567-89ef-0123-456789abcdef"));
    EXPECT_FALSE(is_vm_uuid("uuid:0123abcg-4567-89ef-0123-456789abcdef"));
    EXPECT_FALSE(is_vm_uuid("uuid:"));
    EXPECT_FALSE(is_vm_uuid("uuid:1111"));
}

TEST(VmReference, SaysWhy) {
    EXPECT_FALSE(vm_reference_problem("work"));
    EXPECT_FALSE(vm_reference_problem("uuid:0123abcd-4567-89ef-0123-456789abcdef"));
    EXPECT_EQ(vm_reference_problem(""), "empty");
    EXPECT_EQ(vm_reference_problem(std::string(32, 'a')), "longer than 31 characters");
    ASSERT_TRUE(vm_reference_problem("a/b"));
    EXPECT_NE(vm_reference_problem("a/b")->find("not a VM name"), std::string::npos);
    ASSERT_TRUE(vm_reference_problem("uuid:1111"));
    EXPECT_NE(vm_reference_problem("uuid:1111")->find("UUID"), std::string::npos);
}
