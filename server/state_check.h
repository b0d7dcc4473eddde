// A state directory (--state-dir, the files of server/file_store.h) checked
// and recovered offline: `nftproxy state check DIR`, `nftproxy state recover
// DIR`, and `serve --recover`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/file_store.h"

namespace nftproxy::server {

// What each file holds (format, revisions, groups), the first problem (file, byte offset, what) and the newest
// consistent point; changes nothing. Errors only when the directory cannot be read (NotFound: no such
// directory; FailedPrecondition: not a directory).
absl::StatusOr<StateReport> CheckStateDir(const std::string& dir);

// The report as text, one line per file, then the problem and what recovery would keep and lose.
std::string DescribeStateReport(const StateReport& report);

struct RecoveryReport {
  std::string dir;
  // False: the directory checked out and nothing was changed (a torn tail is left to the server's start).
  bool recovered = false;
  StateProblem problem;           // what did not check out
  std::string moved_to;           // DIR/damaged-<time>: the files as they were, byte for byte
  std::vector<std::string> moved;  // the names of the files there
  uint64_t revision = 0;          // the revision DIR holds now
  uint64_t resources = 0;
  uint64_t newest_revision = 0;   // the newest revision the files named
  uint64_t lost_changes = 0;      // newest_revision - revision
  uint64_t lost_groups = 0;       // intact journal groups after the damage, dropped

  // One paragraph, for the CLI and the server's log.
  std::string Summary() const;
};

// Starts the directory over from its newest consistent point: writes that state as a fresh snapshot and journal
// (a new history) and moves every state file that was there into DIR/damaged-<time>/ (nothing is deleted,
// truncated or overwritten: the old files are linked there before the new ones are renamed over their names,
// so a crash at any point leaves either the old files or the new ones). Does nothing when the directory checks
// out. FailedPrecondition when the files were written by a newer nftproxy. The caller holds the directory's
// lock (InstanceLocks::LockStateDir): no server may be using it.
absl::StatusOr<RecoveryReport> RecoverStateDir(const std::string& dir);

// `nftproxy state check DIR` (exit 0: the directory checks out, 1: it does not, or cannot be read) and
// `nftproxy state recover DIR` (0: recovered or nothing to do, 1: failed or in use); 2: usage. `args` are the
// words after `state`.
int RunStateCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace nftproxy::server
