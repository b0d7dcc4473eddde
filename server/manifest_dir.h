// Appliance mode (`serve --manifests DIR`): a directory of manifests, the
// formats of `nftproxy apply -f` (manifest/), subdirectories included, kept
// synced as ONE source, "dir:" + the directory's absolute path, through the
// write engine's Sync: the same path as the gRPC Sync method, so validation,
// atomicity, the journal and Watch events all apply.
//
// When it reads:
//  - inotify: a file closed after writing (IN_CLOSE_WRITE) or renamed into
//    place (IN_MOVED_TO), a file removed or renamed away, a subdirectory made
//    (watched from then on) or removed. Events are coalesced: the directory is
//    read once 200 ms after the last one (at most 1 s after the first).
//  - a file that was created or written to and not yet closed is "open for
//    writing": a read of the directory takes the text it had when it was last
//    closed (or leaves it out if it is new), never a half-written one.
//  - a rescan every 10 s (1 s while something is unsettled), for what inotify
//    missed (IN_Q_OVERFLOW, no watches left): a file that changed is taken
//    only once its size, mtime and inode were the same in two looks.
// Which files: *.yaml, *.yml, *.json, except hidden and editors' files (names
// starting with '.' or '#', ending in '~', .swp, .swx, .tmp, .bak, .orig,
// .dpkg-*, .rpmnew, .rpmsave, .ucf-*); hidden directories are not entered,
// symlinks to files are followed, symlinks to directories are not.
//
// A directory that does not parse or validate (or is over a limit) changes
// nothing: what was installed keeps serving; the error, naming the file,
// document and field, is logged and shown in Status until the directory is
// fixed. The files are trusted like a local admin calling the API: a
// world-writable directory or file is warned about in the log.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

struct ManifestDirLimits {
  size_t max_files = 10000;
  // Each file, and all of them together (they become one Sync request):
  // serve sets both to --max-request-bytes.
  uint64_t max_file_bytes = 64 << 20;
  uint64_t max_total_bytes = 64 << 20;
  // Levels of subdirectories below the directory.
  int max_depth = 16;
  // Directories (each an inotify watch), the root included.
  size_t max_dirs = 1000;
};

// Whether a directory entry's name is a manifest the directory is read for:
// *.yaml, *.yml, *.json and not an ignored (hidden, editor) name.
bool IsIgnoredName(absl::string_view name);
bool IsManifestFileName(absl::string_view name);

// What a look at a file sees; equal looks mean "not changed".
struct FileStat {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  uint64_t dev = 0;
  bool world_writable = false;
  bool operator==(const FileStat& o) const {
    return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode && dev == o.dev;
  }
  bool operator!=(const FileStat& o) const { return !(*this == o); }
};
// Manifest files by path relative to the root ("a.yaml", "sub/b.yaml").
using DirListing = std::map<std::string, FileStat>;

struct ScanResult {
  DirListing files;
  // Directories, relative ("" for the root), that were entered.
  std::vector<std::string> dirs;
  // Relative paths (directories with a trailing '/') others may write to.
  std::vector<std::string> world_writable;
};
// Every manifest file under `root`, within `limits` (max_files, max_depth;
// over one is InvalidArgument naming it).
absl::StatusOr<ScanResult> ScanManifestDir(const std::string& root, const ManifestDirLimits& limits);

// The rescan's decision. `taken`: what the last read of the directory used;
// `before` and `now`: the last two looks. Files that differ from `taken` are
// changed; a changed file is stable when `before` and `now` agree on it
// (both present and equal, or both absent).
struct RescanDecision {
  bool read = false;             // some changed file is stable: read the directory
  std::set<std::string> unsettled;  // changed, not stable: keep their taken text
};
RescanDecision DecideRescan(const DirListing& taken, const DirListing& before, const DirListing& now);

// Coalesces a burst of events: Due once `quiet` passed since the last Note,
// or `max_delay` since the first.
class Debouncer {
 public:
  Debouncer(absl::Duration quiet, absl::Duration max_delay) : quiet_(quiet), max_delay_(max_delay) {}
  void Note(absl::Time now) {
    if (!pending_) first_ = now;
    pending_ = true;
    last_ = now;
  }
  bool pending() const { return pending_; }
  absl::Time deadline() const { return std::min(last_ + quiet_, first_ + max_delay_); }
  bool Due(absl::Time now) const { return pending_ && now >= deadline(); }
  void Clear() { pending_ = false; }

 private:
  absl::Duration quiet_, max_delay_;
  bool pending_ = false;
  absl::Time first_, last_;
};

// One --manifests directory.
class ManifestDir {
 public:
  using SyncFn = std::function<absl::Status(const v1::SyncRequest&, v1::SyncResponse*)>;

  // `dir` as an absolute, normalized path if it is a directory that can be
  // read; InvalidArgument "DIR: ..." otherwise.
  static absl::StatusOr<std::string> CheckRoot(const std::string& dir);

  // `root` as CheckRoot returns it.
  ManifestDir(std::string root, ManifestDirLimits limits);
  ~ManifestDir();
  ManifestDir(const ManifestDir&) = delete;
  ManifestDir& operator=(const ManifestDir&) = delete;

  const std::string& root() const { return root_; }
  // "dir:" + root.
  const std::string& source() const { return source_; }

  // Syncs the directory once (blocking), then watches it on a thread of its
  // own, calling `sync` for every change.
  void Start(SyncFn sync);
  // Ends the thread; idempotent.
  void Stop();

  v1::ManifestDirStatus Status() const ABSL_LOCKS_EXCLUDED(status_mu_);

  // Reads the directory as it is now and syncs it (if it changed since the
  // last attempt, or `force`); the files in `open_for_write` keep the text
  // they had at their last read. Returns what the attempt came to (OK when
  // nothing changed). Used by the thread; public for tests.
  absl::Status ReadAndSync(const std::set<std::string>& open_for_write, bool force = false);
  // The listing the last read used (tests).
  const DirListing& taken() const { return taken_; }

  // Knobs for tests.
  absl::Duration quiet = absl::Milliseconds(200);
  absl::Duration max_delay = absl::Seconds(1);
  absl::Duration rescan_interval = absl::Seconds(10);
  absl::Duration unsettled_rescan_interval = absl::Seconds(1);
  bool use_inotify = true;  // false: the rescan alone (tests)

 private:
  struct Cached {
    FileStat stat;
    std::string text;
  };
  void Run();
  // Adds watches to `rel` (relative, "" for the root) and every directory
  // below it; returns false if some could not be added.
  bool WatchTree(const std::string& rel, int depth);
  void HandleEvents(std::set<std::string>* open_for_write, bool* changed, bool* overflow);
  void NoteError(const std::string& error);
  // Looks at the unverified files again: those unchanged since the last look
  // (or gone) are verified. True if some are left.
  bool Reverify();
  // The files reads must hold back: open for writing, or unverified.
  std::set<std::string> HeldBack(const std::set<std::string>& open_for_write) const;

  const std::string root_;
  const std::string source_;
  const ManifestDirLimits limits_;
  SyncFn sync_;

  // The watcher thread's own state.
  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: Stop wakes the thread
  std::map<int, std::string> watches_;  // wd -> relative directory
  std::map<std::string, Cached> cache_;  // the text each file had when read
  DirListing taken_;                    // what the last attempt read
  // Files not known to be closed (found in a new subdirectory before its
  // watch, or open when the inotify queue overflowed), with what the last
  // look saw: held back until two looks (at least `quiet` apart) agree.
  std::map<std::string, FileStat> unverified_;
  bool attempted_ = false;
  std::set<std::string> warned_;  // world-writable paths already warned about
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex status_mu_;
  v1::ManifestDirStatus status_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace nftproxy::server
