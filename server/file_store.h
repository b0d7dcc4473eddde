// The desired state kept on local disk: a snapshot plus an append-only
// journal (see FileStateStore), in files that check themselves (see "The
// files" below). The embedded default store of `serve --state-dir`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/state_store.h"

namespace nftproxy::server {

// ---- The files ---------------------------------------------------------------------------------------------
//
// All integers little-endian. CRC = CRC-32C (common/crc32c.h). A "history" is 16 random bytes chosen when a
// state directory starts from nothing (or is recovered, or upgraded from format 1); every file and every journal
// group of that directory carries it, so files of two directories (or of before and after a recovery) are
// never mixed up.
//
// DIR/state.pb, the snapshot: every resource at one revision.
//    0  8 bytes  magic "NFTPXSNP"
//    8  u32      format version, 2
//   12  u32      header size, 64
//   16  16 bytes history
//   32  u64      revision
//   40  u64      payload size
//   48  u32      CRC of the payload
//   52  u32      number of resources
//   56  u32      0
//   60  u32      CRC of bytes 0-59
//   64  payload: a serialized v1::ListResponse (every resource, and the revision again)
//
// DIR/state.journal: the changes committed since the snapshot, append-only.
//    0  8 bytes  magic "NFTPXJNL"
//    8  u32      format version, 2
//   12  u32      header size, 48
//   16  16 bytes history
//   32  u64      the revision of the snapshot this journal follows (0: none, the history starts here)
//   40  u32      0
//   44  u32      CRC of bytes 0-43
//   48  groups, one per committed change, each:
//        0  u32      magic "NPXG"
//        4  u32      payload size
//        8  u64      revision of the change
//       16  u64      the revision before it (the snapshot's, or the previous group's): a missing group is a gap
//       24  u64      the snapshot revision of the journal's header
//       32  16 bytes history
//       48  u32      CRC of the payload
//       52  u32      CRC of bytes 0-51
//       56  payload: per key the change touched, a u32 size and a serialized v1::WatchEvent: UPSERT (the whole
//           resource) or DELETE (kind, namespace and name only, see ResourceOf), each carrying the revision.
//
// Format 1 (nftproxy before this format; no magic): state.pb a bare v1::ListResponse, state.journal records of a
// u32 size and a v1::WatchEvent, each group ended by a BOOKMARK event. Still read (a magic cannot start a valid
// ListResponse: its first byte 'N' is field 9 with the invalid wire type 6), and replaced by format 2 files at
// the first save.
//
// What counts as what on load:
//  - a torn tail: the journal ends inside its last group (a header cut short, a group running past the end of
//    the file, or zeros from inside the last group to the end: a file system that extended the file before the
//    data reached the disk). An append the process did not finish; the group was never acknowledged (the reply
//    waits for fdatasync), so it is dropped and cut off, with a warning.
//  - damage: anything else that does not check out: a missing, empty or foreign file (a directory's history
//    starts with both files, the journal first, so after that either one missing is damage), a wrong magic, a
//    CRC mismatch anywhere before that tail (also in a complete last group), a group of another history, a gap
//    in revisions, a journal that follows a newer snapshot than state.pb, a journal without the magic that is not
//    a whole format 1 journal (no complete record, or an unfinished one beside a format 2 snapshot: most likely
//    a format 2 journal whose header is damaged). Damage stops FileStateStore::Open
//    (DataLoss naming the file, the byte offset and the choices) without changing any file.
//  - a journal older than the snapshot (all of it at or below the snapshot's revision: a crash inside a
//    compaction, see below) is skipped, not damage.
//
// Not detectable: both files deleted (that is a new directory), and a journal cut exactly at a group boundary
// (that is a journal whose last appends never happened); format 1 files keep format 1's weaknesses until the
// first save rewrites them.

inline constexpr char kSnapshotFileName[] = "state.pb";
inline constexpr char kJournalFileName[] = "state.journal";
inline constexpr size_t kSnapshotHeaderBytes = 64;
inline constexpr size_t kJournalHeaderBytes = 48;
inline constexpr size_t kGroupHeaderBytes = 56;
inline constexpr size_t kHistoryBytes = 16;
inline constexpr uint32_t kStateFormat = 2;

// What ReadStateDir found in one of the two files.
struct StateFileReport {
  std::string path;
  bool exists = false;
  uint64_t size = 0;
  // 2: the current format; 1: written before it (no magic); 0: missing, empty, or neither (see the problem).
  int format = 0;
  std::string history;    // hex; format 2, when the header checks out
  uint64_t revision = 0;  // the snapshot's revision; for the journal, the snapshot revision it follows
  uint64_t resources = 0;  // snapshot
  // Journal: the groups that check out, before any problem and the torn tail, and their revisions.
  uint64_t groups = 0;
  uint64_t first_revision = 0;
  uint64_t last_revision = 0;
  uint64_t good_bytes = 0;  // journal: where the last group that checks out ends
  uint64_t torn_bytes = 0;  // journal: an unfinished last group after good_bytes, ignored
};

// The first thing in a state directory that does not check out.
struct StateProblem {
  std::string path;    // the file it is in (or the file that is missing)
  uint64_t offset = 0;  // byte offset in that file
  std::string what;
  // Written by a newer nftproxy (a format version above kStateFormat): nothing is wrong with the files, this
  // version cannot read them, and recovery would drop everything; RecoverStateDir refuses.
  bool unsupported = false;
};

// A state directory as found on disk.
struct StateReport {
  std::string dir;
  StateFileReport snapshot;
  StateFileReport journal;
  std::optional<StateProblem> problem;  // none: every file checks out (a torn tail is not a problem)
  // Without a problem, the saved state. With one, the newest consistent point: the intact snapshot (or the
  // empty state when it is missing or damaged) with the journal's groups that follow from it, up to the first
  // that does not; revision 0 when nothing survives.
  State state;
  std::string history;  // raw bytes: the history the consistent point belongs to (empty: none)
  // The newest revision that any intact header in the files mentions: newest_revision - state.revision changes
  // are lost by starting from `state`. (An unreadable snapshot header or journal may hide newer ones.)
  uint64_t newest_revision = 0;
  // Intact groups after the consistent point that cannot be applied (they follow the damage).
  uint64_t groups_after_problem = 0;

  bool ok() const { return !problem.has_value(); }
  uint64_t lost_changes() const { return newest_revision > state.revision ? newest_revision - state.revision : 0; }
};

// Reads and checks DIR/state.pb and DIR/state.journal; changes nothing. Damage is reported in
// StateReport::problem; the status is an error only when the files cannot be read (permissions, I/O; NotFound
// when DIR does not exist).
absl::StatusOr<StateReport> ReadStateDir(const std::string& dir);

// The pieces recovery (server/state_check) builds a state directory from.
std::string NewStateHistory();  // kHistoryBytes random bytes
std::string EncodeSnapshotFile(const State& state, absl::string_view history);
std::string EncodeJournalHeader(absl::string_view history, uint64_t snapshot_revision);
// Writes `data` to `path` (created with mode 0640, or truncated) and fsyncs it.
absl::Status WriteFileSynced(const std::string& path, absl::string_view data);
// fsync of a directory: makes renames and new names in it durable.
absl::Status SyncDirectory(const std::string& dir);

struct FileStateStoreOptions {
  // The journal is folded into a fresh snapshot once it is larger than max(min_compact_bytes, the snapshot's
  // size): rewriting the snapshot costs O(state), and waiting until the journal is at least that large keeps
  // the amortised cost per change proportional to the change. The floor avoids rewriting a small state on
  // nearly every change. Tests lower it.
  size_t min_compact_bytes = size_t{1} << 20;
};

// The desired state on disk, in a directory, in the files described above.
//
// Saving one change costs O(size of the change): one write() of the group and one fdatasync(), both in Publish,
// which the write engine calls before it replies: an acknowledged change survives a power failure. Writes are
// serialized by the engine (one at a time under its lock), so "group commit" is one fdatasync per committed
// write; there are never two writers to batch.
//
// Crash safety of compaction: the snapshot is written to state.pb.tmp, fsynced and renamed into place; then a
// fresh journal (its header only) is written to state.journal.tmp, fsynced and renamed over the old one. A crash
// in between leaves the old journal, whose groups are all at or below the new snapshot's revision: load skips
// them, and the store writes a snapshot (replacing that journal) at its next save instead of appending to it.
// This is why revisions passed to Record/Snapshot must never decrease.
//
// Not thread-safe; the owner locks.
class FileStateStore final : public StateStore {
 public:
  using Options = FileStateStoreOptions;

  // Opens `dir` (which must exist). *loaded receives the saved state: the snapshot with every journal group
  // newer than it replayed, its revision the newest of them; an empty State (revision 0) when nothing was
  // saved (a new directory gets a new history here: its journal, then an empty snapshot). A torn tail of the journal is cut off
  // (logged), so that new appends are well-formed. Anything else that does not check out is DataLoss, and no
  // file is changed: the message names the file, the byte offset, what is wrong and the choices (`nftproxy
  // state check DIR`, `nftproxy state recover DIR` or `serve --recover` with the revision it would start from
  // and the changes it would lose). Format 1 files load, and are replaced by format 2 at the first save.
  static absl::StatusOr<std::unique_ptr<FileStateStore>> Open(const std::string& dir, State* loaded,
                                                              const Options& options = Options());
  ~FileStateStore() override;
  FileStateStore(const FileStateStore&) = delete;
  FileStateStore& operator=(const FileStateStore&) = delete;

  // Prepare + Publish appends one committed change: for each key in `keys`, the resource `state` now holds
  // under it (an upsert) or, when `state` has no such key, a delete (with no keys, only the revision is
  // recorded). A snapshot is written instead when the journal has grown past the threshold (see Options), when
  // the change touches most of the state, when the revision is not newer than the saved one, or when the
  // journal cannot be appended to (an earlier append failed, or it is a format 1 or stale journal).
  // FailedPrecondition when `state.revision` is older than one already saved.
  // Prepare serializes the change, and for a snapshot writes and fsyncs the temporary file (Pending::data is
  // the journal group, or the snapshot's bytes already in snapshot_path() + ".tmp"); Publish appends and
  // fdatasyncs, or renames and replaces the journal.
  Pending Prepare(const State& state, const std::vector<Key>& keys) const override;
  absl::Status Publish(Pending pending) override;
  void Abandon(const Pending& pending) override;
  // Writes a snapshot of `state` now (tmp + fsync + rename + fsync of the directory) and starts a new journal.
  absl::Status Snapshot(const State& state) override;

  const std::string& snapshot_path() const { return snapshot_path_; }
  const std::string& journal_path() const { return journal_path_; }
  // Journal appends made durable (one fdatasync each) since Open.
  uint64_t journal_syncs() const { return journal_syncs_; }

 private:
  FileStateStore(const std::string& dir, const Options& options);
  absl::Status CheckRevision(uint64_t revision) const;
  Pending PrepareSnapshot(const State& state) const;
  // A journal holding only its header, following the snapshot at `snapshot_revision`, replaces the current one.
  absl::Status StartJournal(uint64_t snapshot_revision);

  Options options_;
  std::string dir_;
  std::string snapshot_path_;
  std::string journal_path_;
  std::string history_;  // raw kHistoryBytes
  int journal_fd_ = -1;
  // Bytes of the journal's header and well-formed groups: where the next group starts.
  uint64_t journal_bytes_ = 0;
  // The snapshot revision the journal follows (its header's).
  uint64_t journal_base_ = 0;
  uint64_t snapshot_bytes_ = 0;
  // The newest revision saved (snapshot or journal).
  uint64_t revision_ = 0;
  // Set when the journal cannot take the next change: an append failed (it lacks a change), or it is stale or
  // in format 1. The next save writes a snapshot, which starts a new journal.
  bool needs_snapshot_ = false;
  uint64_t journal_syncs_ = 0;
};

}  // namespace nftproxy::server
