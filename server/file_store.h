// The desired state kept on local disk: a snapshot plus an append-only
// journal (see FileStateStore). The embedded default store of `serve
// --state-dir`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/state_store.h"

namespace nftproxy::server {

// Saves/loads the state to a file atomically (write to path.tmp, fsync, rename, fsync the directory). The file
// is a serialized v1::ListResponse.
absl::Status SaveState(const State& state, const std::string& path);
// NotFound when the file does not exist, DataLoss when it does not parse.
absl::StatusOr<State> LoadState(const std::string& path);

struct FileStateStoreOptions {
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
class FileStateStore final : public StateStore {
 public:
  using Options = FileStateStoreOptions;

  // Opens `dir` (which must exist). *loaded receives the saved state: the snapshot with every journal group
  // newer than it replayed, its revision the newest of them; an empty State (revision 0) when nothing was
  // saved. A torn tail of the journal (the process died while appending) is ignored and cut off, so that new
  // appends are well-formed; any other damage is DataLoss naming the file and byte offset.
  static absl::StatusOr<std::unique_ptr<FileStateStore>> Open(const std::string& dir, State* loaded,
                                                              const Options& options = Options());
  ~FileStateStore() override;
  FileStateStore(const FileStateStore&) = delete;
  FileStateStore& operator=(const FileStateStore&) = delete;

  // Prepare + Publish appends one committed change: for each key in `keys`, the resource `state` now holds
  // under it (an upsert) or, when `state` has no such key, a delete (with no keys, only the revision is
  // recorded). A snapshot is written instead when the journal has grown past the threshold (see Options), when
  // the change touches most of the state, or when an earlier append failed (the journal then misses a change).
  // FailedPrecondition when `state.revision` is older than one already saved.
  // Prepare serializes the change, and for a snapshot writes and fsyncs the temporary file (Pending::data is
  // the journal group, or the snapshot's bytes already in snapshot_path() + ".tmp"); Publish appends, or
  // renames and truncates the journal.
  Pending Prepare(const State& state, const std::vector<Key>& keys) const override;
  absl::Status Publish(Pending pending) override;
  void Abandon(const Pending& pending) override;
  // Writes a snapshot of `state` now (tmp + fsync + rename + fsync of the directory) and empties the journal.
  absl::Status Snapshot(const State& state) override;

  const std::string& snapshot_path() const { return snapshot_path_; }
  const std::string& journal_path() const { return journal_path_; }

 private:
  FileStateStore(std::string dir, const Options& options);
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
