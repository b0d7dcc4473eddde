// The server's desired state: every resource as the API last accepted it.
// A State is a plain value; a write works on a copy and replaces the original
// only after the kernel committed, which makes every write all-or-nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

struct State {
  std::map<Key, v1::Resource> objects;
  uint64_t revision = 0;
};


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

// Saves/loads the state to a file atomically (write to path.tmp, fsync, rename, fsync the directory). The file
// is a serialized v1::ListResponse.
absl::Status SaveState(const State& state, const std::string& path);
// NotFound when the file does not exist, DataLoss when it does not parse.
absl::StatusOr<State> LoadState(const std::string& path);

struct StateStoreOptions {
  // The journal is folded into a fresh snapshot once it is larger than max(min_compact_bytes, the snapshot's
  // size): rewriting the snapshot costs O(state), and waiting until the journal is at least that large keeps
  // the amortised cost per change proportional to the change. The floor avoids rewriting a small state on
  // nearly every change. Tests lower it.
  size_t min_compact_bytes = size_t{1} << 20;
};

// The desired state on disk, in a directory:
//   state.pb       a snapshot: a serialized v1::ListResponse (the format SaveState writes, so a file written by
//                  an older version, which had no journal, still loads).
//   state.journal  the changes committed since, append-only: records, each a little-endian uint32 length
//                  followed by that many bytes of a serialized v1::WatchEvent. One Record call appends one
//                  group: an UPSERT (the whole resource) or DELETE (a resource with only kind, namespace and
//                  name, see ResourceOf) per key, then a BOOKMARK that commits the group. Every event of a
//                  group carries the change's revision.
// Saving one change costs O(size of the change): one write() of the group, without fsync.
//
// Durability: appends reach the page cache only. If the process dies, everything written survives; a group cut
// short (no BOOKMARK) is ignored on load, so a change is saved entirely or not at all. If the machine loses
// power, the journal's tail since the last snapshot can be lost; the kernel's ruleset is lost as well in that
// case, and the orchestrator re-syncs. Snapshots are durable (fsync of the file and the directory).
//
// Crash safety of compaction: the snapshot is renamed into place before the journal is truncated, and load
// skips groups whose revision is <= the snapshot's, so a crash in between loses nothing and replays nothing
// twice. This is why revisions passed to Record/Snapshot must never decrease.
//
// Not thread-safe; the owner locks.
class StateStore {
 public:
  using Options = StateStoreOptions;

  // Opens `dir` (which must exist). *loaded receives the saved state: the snapshot with every journal group
  // newer than it replayed, its revision the newest of them; an empty State (revision 0) when nothing was
  // saved. A torn tail of the journal (the process died while appending) is ignored and cut off, so that new
  // appends are well-formed; any other damage is DataLoss naming the file and byte offset.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir, State* loaded,
                                                          const Options& options = Options());
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Appends one committed change: for each key in `keys`, the resource `state` now holds under it (an upsert)
  // or, when `state` has no such key, a delete; `state.revision` is the change's revision (with no keys, only
  // the revision is recorded). Writes a snapshot instead when the journal has grown past the threshold (see
  // Options), when the change touches most of the state, or when an earlier append failed (the journal then
  // misses a change). FailedPrecondition when `state.revision` is older than one already saved.
  // Record(state, keys) is Publish(Prepare(state, keys)).
  absl::Status Record(const State& state, const std::vector<Key>& keys);
  // Writes a snapshot of `state` now (tmp + fsync + rename + fsync of the directory) and empties the journal;
  // for a restore or a first commit. FailedPrecondition when `state.revision` is older than one already saved.
  absl::Status Snapshot(const State& state);

  // Record in two steps, so that the costly part can run while the change is still being committed to the
  // kernel, and be dropped if the kernel refuses it. Prepare serializes the change, and for a snapshot writes
  // and fsyncs the temporary file; nothing a load would read changes. It only reads the store, so it may run on
  // another thread while the owner waits (no other call in between). Publish makes it the saved state (append,
  // or rename + truncate); Abandon forgets it.
  struct Pending {
    bool snapshot = false;
    uint64_t revision = 0;
    std::string data;  // the journal group, or the snapshot's bytes (already in snapshot_path() + ".tmp")
    absl::Status status;  // a failed Prepare: Publish returns it
  };
  Pending Prepare(const State& state, const std::vector<Key>& keys) const;
  absl::Status Publish(Pending pending);
  void Abandon(const Pending& pending);

  const std::string& snapshot_path() const { return snapshot_path_; }
  const std::string& journal_path() const { return journal_path_; }

 private:
  StateStore(std::string dir, const Options& options);
  absl::Status CheckRevision(uint64_t revision) const;
  Pending PrepareSnapshot(const State& state) const;
  // After the snapshot file is in place: the journal restarts empty.
  absl::Status SnapshotWritten(const Pending& p);

  Options options_;
  std::string snapshot_path_;
  std::string journal_path_;
  int journal_fd_ = -1;
  // Bytes of well-formed groups in the journal: where the next group starts.
  uint64_t journal_bytes_ = 0;
  uint64_t snapshot_bytes_ = 0;
  // The newest revision saved (snapshot or journal).
  uint64_t revision_ = 0;
  // Set when an append failed: the journal lacks a change, so the next Record must write a snapshot.
  bool needs_snapshot_ = false;
};

}  // namespace nftproxy::server
