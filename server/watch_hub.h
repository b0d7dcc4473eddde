// Watch: the bounded log of committed changes and the streams that follow
// it. The write engine publishes each commit's events here, in commit
// order, while it holds its own lock; streams pull from here, not from the
// engine.
//
// No thread per stream: a stream is a WatchCursor, a position in the shared
// log, that its owner (the gRPC reactor, server/watch_stream.h) asks for the
// next events whenever it can send more. A cursor with nothing to send is
// idle until the hub calls its `wake`. Publish only appends the commit's
// events to the log (O(events), independent of the number of streams); the
// hub's own thread serializes them once, makes them visible to the streams
// and wakes the idle ones. Every stream sends the same shared bytes.
//
// Lock order: WatchCursor::wake_mu_ -> (the owner's lock) ->
// WatchCursor::mu_ -> WatchHub::mu_ -> WatchHub::streams_mu_.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/parallel.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

// One committed change as the log keeps it: serialized once, the bytes
// shared by every stream that sends it. Appended with its revision only;
// the rest is filled in before streams see it.
struct LoggedEvent {
  uint64_t revision = 0;
  // What streams filter on: the resource's kind and namespace.
  v1::Kind kind = v1::KIND_UNSPECIFIED;
  std::string ns;
  // The serialized v1::WatchEvent.
  std::shared_ptr<const std::string> bytes;

  static LoggedEvent Of(const v1::WatchEvent& e);
};

// A bounded, in-memory log of committed changes, for Watch. Not thread-safe;
// the owner locks. Events are numbered in the order they were appended
// (numbers are never reused, also across Reset).
class ChangeLog {
 public:
  static constexpr size_t kDefaultCapacity = 10000;
  explicit ChangeLog(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // Forgets everything: the log is complete from `revision` on (start-up,
  // restore).
  void Reset(uint64_t revision);
  // Appends the events of one commit (revisions must not decrease). Drops
  // the oldest events beyond the capacity, never those of the newest commit.
  void Append(std::vector<LoggedEvent> events);
  // OutOfRange (saying what to do) when some events after revision `since`
  // were already dropped.
  absl::Status CheckSince(uint64_t since) const;
  // The oldest revision one can resume from.
  uint64_t compacted() const { return compacted_; }
  size_t size() const { return events_.size(); }

  // The number of the oldest event kept, and one past the newest.
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return begin_ + events_.size(); }
  // The event numbered `seq`, begin() <= seq < end().
  const LoggedEvent& at(uint64_t seq) const { return events_[seq - begin_]; }
  LoggedEvent& mutable_at(uint64_t seq) { return events_[seq - begin_]; }
  // The number of the first event with a revision greater than `revision`
  // (end() when there is none).
  uint64_t After(uint64_t revision) const;

 private:
  size_t capacity_;
  // Every event with a revision > compacted_ is in events_.
  uint64_t compacted_ = 0;
  uint64_t begin_ = 0;
  std::deque<LoggedEvent> events_;
};

// Whether a stream asking `req` wants the resource under `key`.
bool WatchWants(const v1::WatchRequest& req, const Key& key);

struct WatchOptions {
  // How many events the log keeps (what streams can resume from).
  size_t log_capacity = ChangeLog::kDefaultCapacity;
  // Streams open at once; more are refused (RESOURCE_EXHAUSTED).
  size_t max_streams = 8192;
  // A stream (past its BOOKMARK) more than this many events behind the
  // newest event for longer than slow_grace is ended (ABORTED, with the
  // revision to resume from). The grace lets a reader that keeps up work
  // through one large commit.
  size_t buffer_events = 1000;
  absl::Duration slow_grace = absl::Seconds(1);
};

// One thing for a stream to send: a serialized v1::WatchEvent.
struct WatchItem {
  uint64_t revision = 0;
  std::shared_ptr<const std::string> bytes;
};

class WatchCursor;

// Reads a page of the initial state: see WatchHub::Open.
using WatchPager = std::function<void(std::optional<Key>* after, std::vector<v1::WatchEvent>* events)>;

class WatchHub {
 public:
  using Pager = WatchPager;

  explicit WatchHub(WatchOptions options = {});
  ~WatchHub();

  // Forgets every change: streams can resume from `revision` on (start-up,
  // restore).
  void Reset(uint64_t revision) ABSL_LOCKS_EXCLUDED(mu_);
  // The events of one commit that made `revision` (revisions increase).
  // Cheap for the caller whatever the number of streams: the events are
  // serialized and the streams woken on the hub's thread.
  void Publish(std::vector<v1::WatchEvent> events, uint64_t revision) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every stream (UNAVAILABLE, at their next Next) and refuses new ones.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Opens a stream for `req`; its events come from WatchCursor::Next, first
  // (since_revision 0) the current state, read with `page` a page at a time
  // on the hub's pager thread (`page` appends one page of UPSERT events
  // after the key *after, nullopt: from the first, and sets *after to the
  // last key of the page or nullopt when the state is complete; the page
  // may hold resources the stream does not want), then the changes after
  // it, a BOOKMARK, and live changes. `wake` is called on the hub's threads,
  // never after WatchCursor::Close returned. Errors: UNAVAILABLE (shutting
  // down), RESOURCE_EXHAUSTED (max_streams open), OUT_OF_RANGE (a revision
  // too old or newer than the hub's).
  absl::StatusOr<std::shared_ptr<WatchCursor>> Open(const v1::WatchRequest& req, Pager page,
                                                    std::function<void()> wake) ABSL_LOCKS_EXCLUDED(mu_);

  // Streams open now.
  size_t streams() const ABSL_LOCKS_EXCLUDED(streams_mu_);
  // How far behind the newest change the furthest-behind live stream (past
  // its BOOKMARK) is: events in the log it has not taken yet. O(streams).
  uint64_t max_lag_events() const ABSL_LOCKS_EXCLUDED(mu_, streams_mu_);
  // Streams ended because they fell behind: too slow (ABORTED), or events
  // they had not sent were dropped from the log (OUT_OF_RANGE).
  uint64_t streams_ended_slow() const { return ended_slow_.load(std::memory_order_relaxed); }
  uint64_t streams_ended_out_of_range() const { return ended_out_of_range_.load(std::memory_order_relaxed); }
  // The newest revision in the log (idle streams are woken once a commit
  // is in it).
  uint64_t log_revision() const ABSL_LOCKS_EXCLUDED(mu_);
  const WatchOptions& options() const { return options_; }

 private:
  friend class WatchCursor;
  // A commit in the log whose events are not serialized yet: log numbers
  // first_seq... .
  struct Commit {
    std::vector<v1::WatchEvent> events;
    uint64_t revision;
    uint64_t first_seq;
  };

  // On waker_: serializes the published commits, makes them visible to the
  // streams, wakes the idle ones and notes those that fall behind.
  void Absorb() ABSL_LOCKS_EXCLUDED(mu_);
  void Forget(WatchCursor* c) ABSL_LOCKS_EXCLUDED(streams_mu_);

  const WatchOptions options_;
  mutable absl::Mutex mu_;
  ChangeLog log_ ABSL_GUARDED_BY(mu_);
  // The newest revision published. Streams see the log up to ready_ (one
  // past the last event serialized), complete up to log_revision_; the
  // commits after it are in pending_.
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ready_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t log_revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Commit> pending_ ABSL_GUARDED_BY(mu_);
  bool absorb_posted_ ABSL_GUARDED_BY(mu_) = false;
  // Counts Resets, so that commits published before one are dropped.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Streams waiting for more events.
  std::vector<std::shared_ptr<WatchCursor>> idle_ ABSL_GUARDED_BY(mu_);
  // Every open stream; under a lock of its own, so that looking at all of
  // them (Absorb) never holds up Publish.
  mutable absl::Mutex streams_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_set<WatchCursor*> streams_ ABSL_GUARDED_BY(streams_mu_);
  std::atomic<uint64_t> ended_slow_{0};
  std::atomic<uint64_t> ended_out_of_range_{0};
  // Last, so that they finish their tasks while the rest is still there.
  // pager_ reads initial-state pages (it may wait for the engine's lock);
  // waker_ runs Absorb.
  TaskThread pager_;
  TaskThread waker_;
};

// One open Watch stream: its request and its position. Made by
// WatchHub::Open; thread-safe.
class WatchCursor : public std::enable_shared_from_this<WatchCursor> {
 public:
  using Pager = WatchPager;
  ~WatchCursor();

  // Appends to *out the next events to send, in order (a few dozen, or a
  // page of the initial state).
  // Everything returned by earlier calls is taken as delivered: call it again
  // once they were. OK with nothing appended: nothing to send now, `wake`
  // will be called when there may be. Not OK: the stream is over, with that
  // status:
  //  - UNAVAILABLE: the hub is shutting down;
  //  - ABORTED: the stream was more than buffer_events events behind the
  //    newest for longer than slow_grace (its reader is too slow);
  //  - OUT_OF_RANGE: events it had not sent yet were dropped from the log;
  // the first two say the revision to resume from, in the message and in
  // the ErrorDetail's resume_revision (when the stream has one: not while
  // it sends the initial state).
  absl::Status Next(std::vector<WatchItem>* out) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the stream: no call of `wake` starts once it returns (it waits for
  // one under way) and the hub forgets it. Must not be called from `wake`.
  void Close() ABSL_LOCKS_EXCLUDED(wake_mu_);

  // The revision everything delivered so far is complete up to (what a new
  // Watch would resume from); nullopt while the initial state is sent.
  std::optional<uint64_t> ResumeRevision() ABSL_LOCKS_EXCLUDED(mu_);
  // Whether a Next that found nothing waits for new commits only (not for a
  // page being read, or for commits already published to reach the log).
  bool CaughtUp() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class WatchHub;
  enum class Phase { kPages, kLog, kOver };

  WatchCursor(WatchHub* hub, v1::WatchRequest req, Pager page, std::function<void()> wake);

  // Calls `wake` unless closed.
  void Wake() ABSL_LOCKS_EXCLUDED(wake_mu_);
  // On the hub's pager thread: reads the next page of the initial state.
  void ReadPage() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status NextFromLog(std::vector<WatchItem>* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the stream with `s`, carrying `resume` (if any) in its ErrorDetail.
  absl::Status End(absl::Status s, std::optional<uint64_t> resume) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ResumeRevision, with hub_->mu_ held too.
  std::optional<uint64_t> ResumeHubLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, hub_->mu_);

  WatchHub* const hub_;
  const v1::WatchRequest req_;
  const Pager pager_;

  absl::Mutex wake_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::function<void()> wake_ ABSL_GUARDED_BY(wake_mu_);
  bool closed_ ABSL_GUARDED_BY(wake_mu_) = false;

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kLog;
  // How it ended (phase_ kOver).
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
  // The initial state (since_revision 0): the page read and not yet taken,
  // where the next starts, whether one is being read, whether all were.
  std::vector<WatchItem> page_items_ ABSL_GUARDED_BY(mu_);
  std::optional<Key> page_after_ ABSL_GUARDED_BY(mu_);
  bool page_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool pages_done_ ABSL_GUARDED_BY(mu_) = false;
  // Log events with a revision <= after_ are not sent (since_revision, or
  // the revision the initial state was read from).
  uint64_t after_ ABSL_GUARDED_BY(mu_) = 0;
  // The BOOKMARK's revision; sent once every event up to it was.
  uint64_t bookmark_at_ ABSL_GUARDED_BY(mu_) = 0;
  bool positioned_ ABSL_GUARDED_BY(mu_) = false;
  // Also read by the hub's thread (Absorb checks how far behind streams
  // are); written under both mu_ and WatchHub::mu_.
  std::atomic<uint64_t> next_seq_{0};  // the next log event to look at
  std::atomic<bool> live_{false};      // the BOOKMARK was sent
  // When the stream was first seen more than buffer_events behind (Unix
  // nanoseconds; 0: it is not).
  std::atomic<int64_t> slow_since_{0};
};

}  // namespace nftproxy::server
