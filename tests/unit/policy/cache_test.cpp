// The policy cache: last good policy + load error, reload only once a writer is done
// (a file rewritten in place is never parsed half-written), snapshots kept by readers.
#include "policy/cache.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

using namespace qrexec::policy;

namespace {

class Tree {
  public:
    Tree() {
        char pattern[] = "/tmp/policy-cache-XXXXXX";
        root_ = ::mkdtemp(pattern);
        std::filesystem::create_directories(root_ + "/etc.d");
        std::filesystem::create_directories(root_ + "/legacy");
    }
    ~Tree() {
        std::error_code ignored;
        std::filesystem::remove_all(root_, ignored);
    }
    std::string file(const std::string& name) const { return root_ + "/etc.d/" + name; }
    CacheConfig config(bool watch = true) const {
        CacheConfig c;
        c.paths.dirs = {root_ + "/etc.d"};
        c.paths.legacy_dir = root_ + "/legacy";
        c.watch = watch;
        c.log = false;
        return c;
    }

  private:
    std::string root_;
};

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

// Delivers the cache's pending events until pred() holds (deadline, no fixed sleeps).
bool pump_until(PolicyCache& cache, const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        pollfd p{cache.watch_fd(), POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) cache.on_watch_readable();
    }
    return true;
}

// Delivers what is queued now.
void pump_pending(PolicyCache& cache) {
    pollfd p{cache.watch_fd(), POLLIN, 0};
    while (::poll(&p, 1, 0) > 0)
        cache.on_watch_readable();
}

} // namespace

TEST(PolicyCache, LoadErrorDeniesButKeepsTheLastGoodPolicy) {
    Tree tree;
    write_file(tree.file("10-a.policy"), "s.A * @anyvm @anyvm allow\n");
    PolicyCache cache(tree.config());
    ASSERT_TRUE(cache.policy()->ok());
    auto good = cache.policy();
    EXPECT_EQ(cache.generation(), 1u);

    write_file(tree.file("10-a.policy"), "s.A * @anyvm\n");
    ASSERT_TRUE(pump_until(cache, [&] { return cache.generation() == 2; }));
    EXPECT_FALSE(cache.policy()->ok());
    EXPECT_NE(cache.policy()->error->find("10-a.policy:1"), std::string::npos);
    EXPECT_EQ(cache.last_good(), good);
    EXPECT_EQ(good->rules.size(), 1u); // a reader's snapshot is never changed
}

TEST(PolicyCache, HalfWrittenFileIsNotLoaded) {
    Tree tree;
    const std::string path = tree.file("10-a.policy");
    write_file(path, "s.A * @anyvm @anyvm allow\n");
    PolicyCache cache(tree.config());
    ASSERT_EQ(cache.generation(), 1u);

    // Rewritten in place: truncate, then half a line, then (later) the rest.
    int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC);
    ASSERT_GE(fd, 0);
    std::string first = "s.B * @anyvm ", rest = "@anyvm allow\n";
    ASSERT_EQ(::write(fd, first.data(), first.size()), static_cast<ssize_t>(first.size()));
    pump_pending(cache);
    EXPECT_EQ(cache.generation(), 1u) << "a file still open for writing was loaded";
    EXPECT_TRUE(cache.reload_pending());
    ASSERT_EQ(::write(fd, rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
    pump_pending(cache);
    EXPECT_EQ(cache.generation(), 1u);
    ::close(fd);
    ASSERT_TRUE(pump_until(cache, [&] { return cache.generation() == 2; }));
    ASSERT_TRUE(cache.policy()->ok()) << *cache.policy()->error;
    EXPECT_EQ(cache.policy()->rules.at(0).service, "s.B");
}

TEST(PolicyCache, NewFileIsLoadedWhenItsWriterCloses) {
    Tree tree;
    PolicyCache cache(tree.config());
    ASSERT_EQ(cache.policy()->rules.size(), 0u);
    int fd = ::open(tree.file("20-new.policy").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    ASSERT_GE(fd, 0);
    pump_pending(cache);
    EXPECT_EQ(cache.generation(), 1u) << "an empty, just created file was loaded";
    std::string text = "s.A * @anyvm @anyvm deny\n";
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    ASSERT_TRUE(pump_until(cache, [&] { return cache.generation() == 2; }));
    EXPECT_EQ(cache.policy()->rules.size(), 1u);
}

TEST(PolicyCache, EditorSwapFilesDoNotHoldReloadsBack) {
    Tree tree;
    PolicyCache cache(tree.config());
    // An editor keeps its swap file open and keeps writing to it.
    int swap = ::open(tree.file(".10-a.policy.swp").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(swap, 0);
    ASSERT_EQ(::write(swap, "x", 1), 1);
    write_file(tree.file("10-a.policy"), "s.A * @anyvm @anyvm allow\n");
    EXPECT_TRUE(pump_until(cache, [&] { return cache.policy()->rules.size() == 1; }));
    ::close(swap);
}

TEST(PolicyCache, OneShotLoadWithoutWatching) {
    Tree tree;
    write_file(tree.file("10-a.policy"), "s.A * @anyvm @anyvm allow\n");
    PolicyCache cache(tree.config(false));
    EXPECT_EQ(cache.watch_fd(), -1);
    EXPECT_EQ(cache.policy()->rules.size(), 1u);
    std::string error;
    EXPECT_EQ(cache.system_info(&error), nullptr);
}
