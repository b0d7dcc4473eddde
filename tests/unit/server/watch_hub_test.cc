// The change log behind Watch, stream filtering, and cursors: what Next
// returns, when `wake` is called, the stream cap, slow and compacted
// streams, shutdown. Streams end to end are tested through the write engine
// (write_engine_test.cc) and over gRPC (watch_stream_test.cc).
#include "server/watch_hub.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/errors.h"

namespace nftproxy::server {
namespace {

LoggedEvent Logged(uint64_t rev) {
  v1::WatchEvent e;
  e.set_revision(rev);
  return LoggedEvent::Of(e);
}

TEST(ChangeLogTest, KeepsTheNewestCommitWhole) {
  ChangeLog log(3);
  log.Reset(10);
  log.Append({Logged(11), Logged(11)});
  log.Append({Logged(12), Logged(12), Logged(12), Logged(12)});  // bigger than the capacity
  EXPECT_EQ(log.size(), 4u);
  EXPECT_EQ(log.compacted(), 11u);
  EXPECT_EQ(log.CheckSince(10).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(log.CheckSince(11).ok());
  // Numbers keep counting past what was dropped.
  EXPECT_EQ(log.begin(), 2u);
  EXPECT_EQ(log.end(), 6u);
  EXPECT_EQ(log.After(11), 2u);
  EXPECT_EQ(log.After(12), 6u);
  EXPECT_EQ(log.at(5).revision, 12u);
  log.Reset(20);
  EXPECT_EQ(log.begin(), 6u);
  EXPECT_EQ(log.end(), 6u);
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

// Counts the calls of a cursor's `wake`.
class Wakes {
 public:
  std::function<void()> Fn() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++n_;
    };
  }
  // Waits (up to 5 s) until there were `n` calls.
  bool WaitFor(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return n_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
  }
  int count() {
    absl::MutexLock lock(&mu_);
    return n_;
  }

 private:
  absl::Mutex mu_;
  int n_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::WatchEvent Upsert(const std::string& name, uint64_t rev, v1::Kind kind = v1::SERVICE,
                      const std::string& ns = "default") {
  v1::WatchEvent e;
  e.set_type(v1::WatchEvent::UPSERT);
  e.set_revision(rev);
  v1::ObjectMeta* m = kind == v1::SERVICE ? e.mutable_resource()->mutable_service()->mutable_metadata()
                                          : e.mutable_resource()->mutable_endpoint_slice()->mutable_metadata();
  m->set_name(name);
  m->set_namespace_(ns);
  return e;
}

// "TYPE@rev:name ..." of what Next returned.
std::string Summary(const std::vector<WatchItem>& items) {
  std::string out;
  for (const WatchItem& item : items) {
    v1::WatchEvent e;
    EXPECT_TRUE(e.ParseFromString(*item.bytes));
    EXPECT_EQ(e.revision(), item.revision);
    absl::StrAppend(&out, v1::WatchEvent::Type_Name(e.type()), "@", e.revision());
    if (e.type() != v1::WatchEvent::BOOKMARK) absl::StrAppend(&out, ":", MetaOf(e.resource()).name());
    out += " ";
  }
  return out;
}

std::string Take(WatchCursor* c) {
  std::vector<WatchItem> items;
  absl::Status s = c->Next(&items);
  if (!s.ok()) return std::string(absl::StatusCodeToString(s.code()));
  return Summary(items);
}

// Next until it returns something, waiting for `wake` in between.
std::vector<WatchItem> AwaitItems(WatchCursor* c, Wakes* wakes) {
  std::vector<WatchItem> items;
  for (int i = 0; i < 100; ++i) {
    const int n = wakes->count();
    absl::Status s = c->Next(&items);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok() || !items.empty()) return items;
    EXPECT_TRUE(wakes->WaitFor(n + 1));
  }
  ADD_FAILURE() << "nothing to send";
  return items;
}
std::string Await(WatchCursor* c, Wakes* wakes) { return Summary(AwaitItems(c, wakes)); }

void WaitForLog(const WatchHub& hub, uint64_t revision) {
  for (int i = 0; i < 5000 && hub.log_revision() < revision; ++i) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(hub.log_revision(), revision);
}

v1::WatchRequest Since(uint64_t rev) {
  v1::WatchRequest req;
  req.set_since_revision(rev);
  return req;
}

TEST(WatchHubTest, ShutdownEndsStreamsAndRefusesNewOnes) {
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub;
  hub.Reset(3);
  auto c = hub.Open(Since(3), nullptr, wakes.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Take(c->get()), "BOOKMARK@3 ");
  EXPECT_EQ(Take(c->get()), "");  // idle
  hub.Shutdown();
  EXPECT_TRUE(wakes.WaitFor(1));
  std::vector<WatchItem> items;
  absl::Status s = (*c)->Next(&items);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(s.message(), "the server is shutting down; resume from revision 3");
  ASSERT_TRUE(ErrorDetailOf(s).has_value());
  EXPECT_EQ(ErrorDetailOf(s)->resume_revision(), 3u);
  EXPECT_EQ(hub.streams(), 0u);
  EXPECT_EQ(hub.Open(Since(3), nullptr, nullptr).status().code(), absl::StatusCode::kUnavailable);
}

TEST(WatchHubTest, BacklogThenBookmarkThenLiveChangesWithAWakeEach) {
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  Wakes other;
  WatchHub hub;
  hub.Publish({Upsert("a", 1)}, 1);
  hub.Publish({Upsert("b", 2), Upsert("c", 2)}, 2);
  auto c = hub.Open(Since(1), nullptr, wakes.Fn());
  ASSERT_TRUE(c.ok()) << c.status();
  // The commits may still be on their way into the log: the stream waits
  // for them, then sends them and the bookmark.
  EXPECT_EQ(Await(c->get(), &wakes), "UPSERT@2:b UPSERT@2:c BOOKMARK@2 ");
  EXPECT_EQ(Take(c->get()), "");
  const int before = wakes.count();
  hub.Publish({Upsert("d", 3)}, 3);
  ASSERT_TRUE(wakes.WaitFor(before + 1));
  EXPECT_EQ(Take(c->get()), "UPSERT@3:d ");
  EXPECT_EQ((*c)->ResumeRevision(), 3u);
  // Closed: no more wakes.
  EXPECT_EQ(Take(c->get()), "");
  (*c)->Close();
  EXPECT_EQ(hub.streams(), 0u);
  auto d = hub.Open(Since(3), nullptr, other.Fn());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(Await(d->get(), &other), "BOOKMARK@3 ");
  EXPECT_EQ(Take(d->get()), "");
  const int n = other.count();
  hub.Publish({Upsert("e", 4)}, 4);
  ASSERT_TRUE(other.WaitFor(n + 1));
  EXPECT_EQ(Take(d->get()), "UPSERT@4:e ");
  EXPECT_EQ(wakes.count(), before + 1);
}

TEST(WatchHubTest, FiltersAndSkipsWhatItDoesNotWant) {
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub;
  v1::WatchRequest req = Since(0);
  req.set_namespace_("shop");
  req.add_kinds(v1::ENDPOINT_SLICE);
  auto c = hub.Open(req, [](std::optional<Key>* after, std::vector<v1::WatchEvent>*) { after->reset(); },
                    wakes.Fn());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Take(c->get()), "");  // the (empty) initial state is being read
  EXPECT_EQ(Await(c->get(), &wakes), "BOOKMARK@0 ");
  EXPECT_EQ(Take(c->get()), "");
  std::vector<v1::WatchEvent> many;
  for (int i = 0; i < 10000; ++i) many.push_back(Upsert(absl::StrCat("s", i), 1));
  many.push_back(Upsert("x", 1, v1::ENDPOINT_SLICE, "shop"));
  many.push_back(Upsert("y", 1, v1::ENDPOINT_SLICE, "other"));
  hub.Publish(std::move(many), 1);
  EXPECT_EQ(Await(c->get(), &wakes), "UPSERT@1:x ");
  EXPECT_EQ(Take(c->get()), "");
}

TEST(WatchHubTest, InitialStatePageByPageThenChangesMadeMeanwhile) {
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub;
  // Two pages; a change is committed while the first is sent.
  auto pager = [](std::optional<Key>* after, std::vector<v1::WatchEvent>* events) {
    if (!after->has_value()) {
      events->push_back(Upsert("a", 0));
      events->push_back(Upsert("b", 0));
      *after = Key{v1::SERVICE, "default", "b"};
    } else {
      events->push_back(Upsert("c", 1));
      after->reset();
    }
  };
  auto c = hub.Open(Since(0), pager, wakes.Fn());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->ResumeRevision(), std::nullopt);
  EXPECT_EQ(Await(c->get(), &wakes), "UPSERT@0:a UPSERT@0:b ");
  hub.Publish({Upsert("c", 1)}, 1);
  EXPECT_EQ(Await(c->get(), &wakes), "UPSERT@1:c ");
  EXPECT_EQ(Await(c->get(), &wakes), "UPSERT@1:c BOOKMARK@1 ");
  EXPECT_EQ((*c)->ResumeRevision(), 1u);
}

TEST(WatchHubTest, CapsStreams) {
  WatchOptions options;
  options.max_streams = 2;
  WatchHub hub(options);
  auto a = hub.Open(Since(0), nullptr, nullptr);
  auto b = hub.Open(Since(0), nullptr, nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<std::shared_ptr<WatchCursor>> c = hub.Open(Since(0), nullptr, nullptr);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("at most 2 at once (--max-watch-streams)"), std::string::npos) << c.status();
  (*a)->Close();
  EXPECT_TRUE(hub.Open(Since(0), nullptr, nullptr).ok());  // (and gone when released)
  EXPECT_EQ(hub.streams(), 1u);
}

TEST(WatchHubTest, ASlowStreamEndsWithTheRevisionToResumeFrom) {
  WatchOptions options;
  options.buffer_events = 45;
  options.slow_grace = absl::ZeroDuration();
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  Wakes again;
  WatchHub hub(options);
  hub.Reset(10);
  auto c = hub.Open(Since(10), nullptr, wakes.Fn());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Await(c->get(), &wakes), "BOOKMARK@10 ");
  EXPECT_EQ(Take(c->get()), "");
  // One commit of 40 events: more than one Next returns and more than the
  // buffer, but the stream keeps up.
  std::vector<v1::WatchEvent> big;
  for (int i = 0; i < 40; ++i) big.push_back(Upsert(absl::StrCat("s", i), 11));
  hub.Publish(std::move(big), 11);
  EXPECT_EQ(AwaitItems(c->get(), &wakes).size(), 32u);
  // 8 + 40 events behind once these are in; revision 11 was only partly
  // delivered.
  for (uint64_t rev = 12; rev <= 51; ++rev) hub.Publish({Upsert("t", rev)}, rev);
  WaitForLog(hub, 51);
  EXPECT_EQ(hub.max_lag_events(), 48u);
  EXPECT_EQ(hub.streams_ended_slow(), 0u);
  std::vector<WatchItem> items;
  absl::Status s = (*c)->Next(&items);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(hub.streams_ended_slow(), 1u);
  EXPECT_EQ(hub.max_lag_events(), 0u);  // (the only stream is gone)
  EXPECT_EQ(s.message(),
            "this watch fell 48 events behind the newest change (more than 45, --watch-buffer-events, for 0): its "
            "client reads too slowly; resume with since_revision=10");
  ASSERT_TRUE(ErrorDetailOf(s).has_value());
  EXPECT_EQ(ErrorDetailOf(s)->resume_revision(), 10u);
  EXPECT_EQ(hub.streams(), 0u);
  // It stays ended.
  EXPECT_EQ((*c)->Next(&items).code(), absl::StatusCode::kAborted);
  // Resuming from there gives the rest.
  auto d = hub.Open(Since(10), nullptr, again.Fn());
  ASSERT_TRUE(d.ok());
  size_t n = 0;
  std::string last;
  while (last.find("BOOKMARK") == std::string::npos) {
    std::vector<WatchItem> got = AwaitItems(d->get(), &again);
    ASSERT_FALSE(got.empty());
    n += got.size();
    last = Summary(got);
  }
  EXPECT_EQ(n, 40u + 40 + 1);
}

TEST(WatchHubTest, ABehindStreamGetsAGraceToCatchUp) {
  WatchOptions options;
  options.buffer_events = 2;
  options.slow_grace = absl::Hours(1);
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub(options);
  auto c = hub.Open(Since(0), nullptr, wakes.Fn());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Await(c->get(), &wakes), "BOOKMARK@0 ");
  EXPECT_EQ(hub.max_lag_events(), 0u);
  for (uint64_t rev = 1; rev <= 50; ++rev) hub.Publish({Upsert("t", rev)}, rev);
  WaitForLog(hub, 50);
  EXPECT_EQ(hub.max_lag_events(), 50u);
  size_t got = 0;
  while (got < 50) {
    std::vector<WatchItem> items;
    ASSERT_TRUE((*c)->Next(&items).ok());
    ASSERT_FALSE(items.empty());
    got += items.size();
  }
  // Taken, and the next Next finds nothing: caught up.
  std::vector<WatchItem> none;
  ASSERT_TRUE((*c)->Next(&none).ok());
  EXPECT_EQ(hub.max_lag_events(), 0u);
  EXPECT_EQ(hub.streams_ended_slow(), 0u);
}

TEST(WatchHubTest, AStreamBehindTheLogIsOutOfRange) {
  WatchOptions options;
  options.log_capacity = 5;
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub(options);
  auto c = hub.Open(Since(0), nullptr, wakes.Fn());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(Await(c->get(), &wakes), "BOOKMARK@0 ");
  for (uint64_t rev = 1; rev <= 20; ++rev) hub.Publish({Upsert("t", rev)}, rev);
  WaitForLog(hub, 20);
  std::vector<WatchItem> items;
  absl::Status s = (*c)->Next(&items);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_EQ(hub.streams_ended_out_of_range(), 1u);
  EXPECT_NE(s.message().find("fell behind and missed changes"), std::string::npos) << s;
  EXPECT_FALSE(ErrorDetailOf(s).has_value());
  // And a revision from before what the log keeps, or after the newest.
  EXPECT_EQ(hub.Open(Since(3), nullptr, nullptr).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(hub.Open(Since(21), nullptr, nullptr).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(hub.Open(Since(15), nullptr, nullptr).ok());
}

// Publish hands the waking to the hub's thread: with thousands of idle
// streams the writer does nothing per stream, and every stream is woken.
TEST(WatchHubTest, PublishCostsTheWriterNothingPerStream) {
  WatchOptions options;
  options.max_streams = 10000;
  // Declared before the hub: the hub (its threads) goes first, so no wake
  // runs into a Wakes that is gone.
  Wakes wakes;
  WatchHub hub(options);
  std::atomic<bool> woken_by_writer{false};
  const std::thread::id writer = std::this_thread::get_id();
  auto wake = [&woken_by_writer, writer, count = wakes.Fn()] {
    if (std::this_thread::get_id() == writer) woken_by_writer = true;
    count();
  };
  std::vector<std::shared_ptr<WatchCursor>> cursors;
  for (int i = 0; i < 5000; ++i) {
    auto c = hub.Open(Since(0), nullptr, wake);
    ASSERT_TRUE(c.ok());
    cursors.push_back(*c);
    EXPECT_EQ(Take(c->get()), "");
  }
  ASSERT_TRUE(wakes.WaitFor(5000));  // initial pages read
  for (auto& c : cursors) {
    EXPECT_EQ(Take(c.get()), "BOOKMARK@0 ");
    EXPECT_EQ(Take(c.get()), "");
  }
  std::vector<absl::Duration> took;
  for (uint64_t rev = 1; rev <= 21; ++rev) {
    const absl::Time start = absl::Now();
    hub.Publish({Upsert("t", rev)}, rev);
    took.push_back(absl::Now() - start);
    ASSERT_TRUE(wakes.WaitFor(5000 + 5000 * static_cast<int>(rev)));
    for (auto& c : cursors) {
      EXPECT_EQ(Take(c.get()), absl::StrCat("UPSERT@", rev, ":t "));
      EXPECT_EQ(Take(c.get()), "");
    }
  }
  EXPECT_FALSE(woken_by_writer);
  // (Only shown: on a busy machine the hub's thread, woken by Publish, can
  // preempt the writer's.)
  std::sort(took.begin(), took.end());
  std::cout << "Publish with 5000 idle streams: median " << took[took.size() / 2] << ", slowest " << took.back()
            << "\n";
  for (auto& c : cursors) c->Close();
}

}  // namespace
}  // namespace nftproxy::server
