// The change log behind Watch, and stream filtering. Streams end to end are
// tested through the write engine (write_engine_test.cc).
#include "server/watch_hub.h"

#include <gtest/gtest.h>

namespace nftproxy::server {
namespace {

TEST(ChangeLogTest, KeepsTheNewestCommitWhole) {
  ChangeLog log(3);
  log.Reset(10);
  auto ev = [](uint64_t rev) {
    v1::WatchEvent e;
    e.set_revision(rev);
    return e;
  };
  log.Append({ev(11), ev(11)});
  log.Append({ev(12), ev(12), ev(12), ev(12)});  // bigger than the capacity
  EXPECT_EQ(log.size(), 4u);
  EXPECT_EQ(log.compacted(), 11u);
  std::vector<v1::WatchEvent> out;
  EXPECT_EQ(log.Since(10, &out).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(log.Since(11, &out).ok());
  EXPECT_EQ(out.size(), 4u);
  out.clear();
  ASSERT_TRUE(log.Since(12, &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(WatchWantsTest, FiltersByNamespaceAndKind) {
  v1::WatchRequest req;
  EXPECT_TRUE(WatchWants(req, Key{v1::SERVICE, "a", "x"}));
  req.set_namespace_("a");
  EXPECT_TRUE(WatchWants(req, Key{v1::WORKLOAD, "a", "x"}));
  EXPECT_FALSE(WatchWants(req, Key{v1::SERVICE, "b", "x"}));
  req.add_kinds(v1::SERVICE);
  EXPECT_TRUE(WatchWants(req, Key{v1::SERVICE, "a", "x"}));
  EXPECT_FALSE(WatchWants(req, Key{v1::WORKLOAD, "a", "x"}));
}

TEST(WatchHubTest, ShutdownEndsStreamsAndRefusesNewOnes) {
  WatchHub hub;
  hub.Reset(3);
  hub.Shutdown();
  v1::WatchRequest req;
  req.set_since_revision(3);
  EXPECT_EQ(hub.Watch(req, nullptr, [] { return false; }, [](const v1::WatchEvent&) { return true; }).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace nftproxy::server
