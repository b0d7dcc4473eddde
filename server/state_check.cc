#include "server/state_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/instance_lock.h"

namespace nftproxy::server {

namespace {

absl::Status ErrnoError(const std::string& what, int err = errno) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(err)));
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string DescribeFile(const char* name, const StateFileReport& f, bool journal) {
  std::string line = absl::StrFormat("  %-15s", name);
  if (!f.exists) return line + "missing";
  if (f.size == 0) return line + "empty (0 bytes)";
  if (f.format == 0) return absl::StrCat(line, "unreadable, ", f.size, " bytes");
  absl::StrAppend(&line, "format ", f.format, ", ");
  if (!journal) {
    absl::StrAppend(&line, "revision ", f.revision, ", ", f.resources, " resources");
  } else {
    if (f.format == 2) absl::StrAppend(&line, "follows revision ", f.revision, ", ");
    absl::StrAppend(&line, f.groups, f.groups == 1 ? " change" : " changes");
    if (f.groups > 0) absl::StrAppend(&line, " (revisions ", f.first_revision, "-", f.last_revision, ")");
    if (f.torn_bytes > 0) {
      absl::StrAppend(&line, ", an unfinished write of ", f.torn_bytes, " bytes at byte ", f.good_bytes,
                      " (dropped on start)");
    }
  }
  if (!f.history.empty()) absl::StrAppend(&line, ", history ", f.history);
  absl::StrAppend(&line, ", ", f.size, " bytes");
  return line;
}

// DIR/damaged-<UTC time>, made unique with a suffix; created.
absl::StatusOr<std::string> MakeAsideDir(const std::string& dir) {
  const std::string base =
      absl::StrCat(dir, "/damaged-", absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()));
  for (int i = 1; i < 1000; ++i) {
    const std::string path = i == 1 ? base : absl::StrCat(base, "-", i);
    if (mkdir(path.c_str(), 0750) == 0) return path;
    if (errno != EEXIST) return ErrnoError(absl::StrCat("creating ", path));
  }
  return absl::AlreadyExistsError(absl::StrCat("too many ", base, "* directories"));
}

}  // namespace

absl::StatusOr<StateReport> CheckStateDir(const std::string& dir) { return ReadStateDir(dir); }

std::string DescribeStateReport(const StateReport& r) {
  std::string out =
      absl::StrCat("state directory ", r.dir, ": ",
                   r.ok() ? "ok" : r.problem->unsupported ? "written by a newer nftproxy" : "DAMAGED", "\n");
  absl::StrAppend(&out, DescribeFile(kSnapshotFileName, r.snapshot, false), "\n");
  absl::StrAppend(&out, DescribeFile(kJournalFileName, r.journal, true), "\n");
  if (r.ok()) {
    absl::StrAppend(&out, "saved state: revision ", r.state.revision, ", ", r.state.objects.size(), " resources\n");
    return out;
  }
  const StateProblem& p = *r.problem;
  absl::StrAppend(&out, "problem: ", p.path, " at byte ", p.offset, ": ", p.what, "\n");
  if (p.unsupported) {
    absl::StrAppend(&out, "this nftproxy cannot read it; run the version that wrote it\n");
    return out;
  }
  absl::StrAppend(&out, "newest consistent point: revision ", r.state.revision, " (", r.state.objects.size(),
                  " resources)");
  if (r.lost_changes() > 0) {
    absl::StrAppend(&out, "; the files name revision ", r.newest_revision, ": starting from it loses ",
                    r.lost_changes(), r.lost_changes() == 1 ? " change" : " changes");
  } else {
    absl::StrAppend(&out, "; the files name no newer revision (what the damaged part held is unknown)");
  }
  if (r.groups_after_problem > 0) {
    absl::StrAppend(&out, ", among them ", r.groups_after_problem, " intact journal group",
                    r.groups_after_problem == 1 ? "" : "s", " after the damage");
  }
  absl::StrAppend(&out, "\nto start from it: nftproxy state recover ", r.dir,
                  " (or serve --recover); the files are moved into ", r.dir, "/damaged-<time>/, not deleted\n");
  return out;
}

std::string RecoveryReport::Summary() const {
  if (!recovered) {
    return absl::StrCat("state directory ", dir, " checks out (revision ", revision, ", ", resources,
                        " resources): nothing to recover");
  }
  std::string s = absl::StrCat("recovered state directory ", dir, ": ", problem.path, " at byte ", problem.offset,
                               ": ", problem.what, ". The files as they were are in ", moved_to, "/ (",
                               absl::StrJoin(moved, ", "), "). ", dir, " now holds revision ", revision, " (",
                               resources, " resources); ");
  if (lost_changes == 1) {
    absl::StrAppend(&s, "lost: 1 change (revision ", newest_revision, ")");
  } else if (lost_changes > 1) {
    absl::StrAppend(&s, "lost: ", lost_changes, " changes (revisions ", revision + 1, " to ", newest_revision, ")");
  } else {
    absl::StrAppend(&s, "lost: what the damaged part held (the files named no newer revision)");
  }
  if (lost_groups > 0) absl::StrAppend(&s, ", among them ", lost_groups, " intact journal groups after the damage");
  return s;
}

absl::StatusOr<RecoveryReport> RecoverStateDir(const std::string& dir) {
  absl::StatusOr<StateReport> checked = ReadStateDir(dir);
  if (!checked.ok()) return checked.status();
  const StateReport& r = *checked;
  RecoveryReport out;
  out.dir = dir;
  out.revision = r.state.revision;
  out.resources = r.state.objects.size();
  out.newest_revision = r.newest_revision;
  if (r.ok()) return out;
  out.problem = *r.problem;
  if (r.problem->unsupported) {
    return absl::FailedPreconditionError(absl::StrCat(r.problem->path, ": ", r.problem->what,
                                                      "; recovery would drop every resource: not recovered"));
  }
  out.recovered = true;
  out.lost_changes = r.lost_changes();
  out.lost_groups = r.groups_after_problem;

  // 1. The new files, complete and durable under temporary names.
  const std::string history = NewStateHistory();
  const std::string snapshot = r.snapshot.path, journal = r.journal.path;
  const std::string new_snapshot = snapshot + ".recover", new_journal = journal + ".recover";
  if (absl::Status s = WriteFileSynced(new_snapshot, EncodeSnapshotFile(r.state, history)); !s.ok()) return s;
  if (absl::Status s = WriteFileSynced(new_journal, EncodeJournalHeader(history, r.state.revision)); !s.ok()) {
    unlink(new_snapshot.c_str());
    return s;
  }
  // 2. The old files, also under their names in DIR/damaged-<time>/ (hard links: the same bytes, not a copy).
  // Leftovers of a save in progress go there too.
  absl::StatusOr<std::string> aside = MakeAsideDir(dir);
  if (!aside.ok()) return aside.status();
  out.moved_to = *aside;
  for (const char* name : {kSnapshotFileName, kJournalFileName}) {
    const std::string from = absl::StrCat(dir, "/", name), to = absl::StrCat(*aside, "/", name);
    if (!Exists(from)) continue;
    if (link(from.c_str(), to.c_str()) != 0) return ErrnoError(absl::StrCat("linking ", from, " to ", to));
    out.moved.push_back(name);
  }
  for (const std::string& name : {absl::StrCat(kSnapshotFileName, ".tmp"), absl::StrCat(kJournalFileName, ".tmp")}) {
    const std::string from = absl::StrCat(dir, "/", name), to = absl::StrCat(*aside, "/", name);
    if (!Exists(from)) continue;
    if (rename(from.c_str(), to.c_str()) != 0) return ErrnoError(absl::StrCat("moving ", from, " to ", to));
    out.moved.push_back(name);
  }
  if (absl::Status s = SyncDirectory(*aside); !s.ok()) return s;
  // 3. The new files take the names: the snapshot first (a crash before the journal's rename leaves the new
  // snapshot with the old journal of another history: refused, and recovered again to the same point).
  if (rename(new_snapshot.c_str(), snapshot.c_str()) != 0) return ErrnoError(absl::StrCat("renaming ", new_snapshot));
  if (rename(new_journal.c_str(), journal.c_str()) != 0) return ErrnoError(absl::StrCat("renaming ", new_journal));
  if (absl::Status s = SyncDirectory(dir); !s.ok()) return s;
  return out;
}

namespace {

constexpr char kUsage[] = R"(Usage:
  nftproxy state check DIR     verify the state directory DIR (serve --state-dir) without changing it
  nftproxy state recover DIR   start DIR over from its newest consistent point

check prints what each file holds (format, revisions, changes) and the first
thing that does not check out, with the file and the byte offset. Exit 0: the
directory checks out; 1: it does not (or cannot be read); 2: usage.

recover moves every state file into DIR/damaged-<time>/ (nothing is deleted)
and writes the newest consistent state in their place: the snapshot with the
journal's changes that follow from it, up to the first that does not. It says
which revision that is and how many changes are lost. The server must not be
running on DIR. `serve --recover` does the same before it starts. Exit 0:
recovered, or nothing to recover; 1: failed.
)";

}  // namespace

int RunStateCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h" || args[0] == "help")) {
    out << kUsage;
    return 0;
  }
  if (args.size() != 2 || (args[0] != "check" && args[0] != "recover")) {
    err << "nftproxy state: want `check DIR` or `recover DIR`\n" << kUsage;
    return 2;
  }
  const std::string& dir = args[1];
  if (args[0] == "check") {
    absl::StatusOr<StateReport> r = CheckStateDir(dir);
    if (!r.ok()) {
      err << "nftproxy state check: " << r.status().message() << "\n";
      return absl::IsNotFound(r.status()) || absl::IsFailedPrecondition(r.status()) ? 2 : 1;
    }
    out << DescribeStateReport(*r);
    return r->ok() ? 0 : 1;
  }
  {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      err << "nftproxy state recover: " << dir << " is not a directory\n";
      return 2;
    }
  }
  InstanceLocks locks;
  if (absl::Status s = locks.LockStateDir(dir); !s.ok()) {
    err << "nftproxy state recover: " << s.message() << "\n";
    return 1;
  }
  absl::StatusOr<RecoveryReport> r = RecoverStateDir(dir);
  if (!r.ok()) {
    err << "nftproxy state recover: " << r.status().message() << "\n";
    return 1;
  }
  out << r->Summary() << "\n";
  return 0;
}

}  // namespace nftproxy::server
