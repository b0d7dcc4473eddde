// The multi-core helpers of common/parallel.h.
#include "common/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"

namespace nftproxy {
namespace {

TEST(ParallelFor, CoversEveryIndexOnceWithRangesInPartOrder) {
  for (size_t n : {0, 1, 7, 1000, 4097}) {
    SCOPED_TRACE(n);
    std::vector<std::atomic<int>> hits(n);
    const size_t parts = ParallelParts(n, 100);
    std::vector<std::pair<size_t, size_t>> ranges(parts, {SIZE_MAX, 0});
    ParallelForParts(n, 100, [&](size_t part, size_t begin, size_t end) {
      ASSERT_LT(part, parts);
      ranges[part] = {begin, end};
      for (size_t i = begin; i < end; ++i) ++hits[i];
    });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << i;
    if (n > 0) {
      EXPECT_EQ(ranges.front().first, 0u);
      EXPECT_EQ(ranges.back().second, n);
      for (size_t p = 1; p < parts; ++p) EXPECT_EQ(ranges[p].first, ranges[p - 1].second) << p;
    }
    if (n < 100) EXPECT_EQ(parts, 1u);
  }
}

TEST(RunAlongside, BothRunAndAreDoneOnReturn) {
  std::atomic<bool> main_ran{false}, side_ran{false};
  RunAlongside([&] { main_ran = true; }, [&] { side_ran = true; });
  EXPECT_TRUE(main_ran);
  EXPECT_TRUE(side_ran);
}

TEST(TaskThread, RunsTasksInOrderAndFinishesThemOnDestruction) {
  std::vector<int> order;
  {
    TaskThread t;
    for (int i = 0; i < 100; ++i) t.Post([&order, i] { order.push_back(i); });
  }
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

struct Counted {
  explicit Counted(std::atomic<int>* n) : n(n) {}
  Counted(Counted&& o) noexcept : n(o.n) { o.n = nullptr; }
  ~Counted() {
    if (n != nullptr) ++*n;
  }
  std::atomic<int>* n;
};

TEST(DiscardLater, DestroysOnTheBackgroundThread) {
  std::atomic<int> destroyed{0};
  Counted c(&destroyed);
  DiscardLater(std::move(c));
  EXPECT_EQ(c.n, nullptr);  // moved from
  absl::Notification done;
  Background().Post([&] { done.Notify(); });  // after the discard, in order
  done.WaitForNotification();
  EXPECT_EQ(destroyed.load(), 1);
}

}  // namespace
}  // namespace nftproxy
