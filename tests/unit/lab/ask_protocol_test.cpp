#include "lab/ask_protocol.h"

#include <gtest/gtest.h>

namespace qrexec::lab {
namespace {

TEST(AskProtocol, QuestionRoundTrips) {
    AskQuestion q{"work", "demo.VaultGet", "+password", "vault", "vault", {"vault", "personal"}};
    auto back = ask_question_from_json(ask_question_to_json(q));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->source, "work");
    EXPECT_EQ(back->service, "demo.VaultGet");
    EXPECT_EQ(back->argument, "+password");
    EXPECT_EQ(back->default_target, "vault");
    EXPECT_EQ(back->proposed, "vault");
    EXPECT_EQ(back->targets, (std::vector<std::string>{"vault", "personal"}));
}

TEST(AskProtocol, HostileQuestionsAreDroppedOrEmpty) {
    EXPECT_FALSE(ask_question_from_json("not json"));
    EXPECT_FALSE(ask_question_from_json("[1,2]"));
    auto q = ask_question_from_json(R"({"source": 5, "targets": ["a", 7, null, "b"]})");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->source, "");
    EXPECT_EQ(q->targets, (std::vector<std::string>{"a", "b"}));
}

TEST(AskProtocol, WaiterRoundTrips) {
    AskWaiter w{1234, "work", "vault", "demo.VaultGet", "/run/ask/1234.sock"};
    auto back = ask_waiter_from_json(ask_waiter_to_json(w));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->pid, 1234);
    EXPECT_EQ(back->socket, "/run/ask/1234.sock");
    EXPECT_FALSE(ask_waiter_from_json("{"));
}

TEST(AskProtocol, AnswersAreAllowOrDeny) {
    EXPECT_TRUE(is_ask_answer("deny"));
    EXPECT_TRUE(is_ask_answer("allow:vault"));
    EXPECT_FALSE(is_ask_answer("yes"));
    EXPECT_FALSE(is_ask_answer(""));
}

} // namespace
} // namespace qrexec::lab
