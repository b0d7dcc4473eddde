// Watch: the bounded log of committed changes and the streams that follow
// it. The write engine publishes each commit's events here, in commit
// order, while it holds its own lock; streams wait here, not on the engine.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

// A bounded, in-memory log of committed changes, for Watch. Not thread-safe;
// the owner locks.
class ChangeLog {
 public:
  static constexpr size_t kDefaultCapacity = 10000;
  explicit ChangeLog(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // Forgets everything: the log is complete from `revision` on (start-up,
  // restore).
  void Reset(uint64_t revision);
  // Appends the events of one commit (revisions must not decrease). Drops
  // the oldest events beyond the capacity, never those of the newest commit.
  void Append(std::vector<v1::WatchEvent> events);
  // Appends to `out` the events with a revision greater than `since`, in
  // order. OutOfRange when some of them were already dropped.
  absl::Status Since(uint64_t since, std::vector<v1::WatchEvent>* out) const;
  // The oldest revision one can resume from.
  uint64_t compacted() const { return compacted_; }
  size_t size() const { return events_.size(); }

 private:
  size_t capacity_;
  // Every event with a revision > compacted_ is in events_.
  uint64_t compacted_ = 0;
  std::deque<v1::WatchEvent> events_;
};

// Whether a stream asking `req` wants the resource under `key`.
bool WatchWants(const v1::WatchRequest& req, const Key& key);

class WatchHub {
 public:
  explicit WatchHub(size_t capacity = ChangeLog::kDefaultCapacity) : log_(capacity) {}

  // Forgets every change: streams can resume from `revision` on (start-up,
  // restore).
  void Reset(uint64_t revision);
  // The events of one commit that made `revision` (revisions increase).
  void Publish(std::vector<v1::WatchEvent> events, uint64_t revision);
  // Ends every stream (UNAVAILABLE) and refuses new ones.
  void Shutdown();

  // Appends to *events one page of the current state (UPSERT events) after
  // the key *after (nullopt: from the first), and sets *after to the last key
  // of the page, or nullopt when the state is complete; for a watch from
  // revision 0. The page may hold resources the stream does not want.
  using Pager = std::function<void(std::optional<Key>* after, std::vector<v1::WatchEvent>* events)>;
  // Streams what `req` asks for to `send` until it returns false
  // (CANCELLED), `cancelled` returns true (polled while idle; CANCELLED),
  // the stream falls behind the log (OUT_OF_RANGE) or Shutdown is called
  // (UNAVAILABLE). A BOOKMARK follows the initial events.
  absl::Status Watch(const v1::WatchRequest& req, const Pager& page, const std::function<bool()>& cancelled,
                     const std::function<bool(const v1::WatchEvent&)>& send);

 private:
  absl::Mutex mu_;
  ChangeLog log_ ABSL_GUARDED_BY(mu_);
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar published_;
};

}  // namespace nftproxy::server
