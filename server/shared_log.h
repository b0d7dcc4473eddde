// The write engine's view of a log of changes shared by many nodes (the
// desired state kept in etcd: server/etcd_store.h implements it over
// server/etcd_log.h). With one, every change the engine commits is first an
// entry of the log, appended guarded by the entry the engine last applied,
// and every node applies the entries it did not write in log order; the
// engine's revisions are the entries' etcd revisions.
//
// An entry's change is a serialized v1::ApplyRequest (the project's own
// type): `upserts` are the resources as stored (namespace, source and times
// filled in, resourceVersion 0: the entry's revision is their version),
// `deletes` the keys removed. A key appears at most once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

// An entry of the log: its sequence number (1, 2, ...) and the revision it
// was committed at. {0, 0}: before the first entry.
struct LogPosition {
  uint64_t seq = 0;
  int64_t revision = 0;
};

struct LogEntry {
  LogPosition position;
  std::string change;  // the encoded change (EncodeChange)
};

class SharedLog {
 public:
  virtual ~SharedLog() = default;
  // Appends `change` right after `after`: the revision it was committed at,
  // ABORTED when the log moved past `after` (catch up, re-validate, retry),
  // or the store's error (the outcome of UNAVAILABLE or DEADLINE_EXCEEDED
  // may be unknown: the entry is applied when it is read back).
  virtual absl::StatusOr<int64_t> Append(const LogPosition& after, const std::string& change) = 0;
  // Up to `limit` entries after `after`, in order, their changes resolved
  // (fewer when they are large: read on until none come back);
  // read at *read_revision (0: the newest), which is set to the store's
  // revision they were read at (none: every entry committed up to it is at
  // or before `after`), so that the next page reads at the same one.
  // OUT_OF_RANGE when entries after `after` were folded into the log's base
  // (Trim): read the whole log again, from ReadBase.
  virtual absl::StatusOr<std::vector<LogEntry>> ReadAfter(const LogPosition& after, size_t limit,
                                                          int64_t* read_revision) = 0;
  // The log's base: the state after the entry at its position (EncodeState),
  // whose entries up to it are gone; nullopt: none, the log starts at entry
  // 1. Read at *read_revision (0: the newest; set to the revision read at,
  // for the ReadAfter pages that follow).
  virtual absl::StatusOr<std::optional<LogEntry>> ReadBase(int64_t* read_revision) = 0;
  // Makes `state` (EncodeState of the state after the entry at `at`, which
  // this node applied) the base and deletes the entries up to it;
  // FAILED_PRECONDITION when that entry is gone already (a later base).
  virtual absl::Status Trim(const LogPosition& at, const std::string& state) = 0;
  // The base's sequence number as of the last read (0: none).
  virtual uint64_t BaseSeq() const = 0;
  // What the log is, for messages ("etcd at http://...").
  virtual std::string Describe() const = 0;
};

// One change: each key with what is now stored under it (nullopt: deleted).
using Change = std::vector<std::pair<Key, std::optional<v1::Resource>>>;

std::string EncodeChange(const Change& change);
// The change of an entry committed at `revision`: every upserted resource
// gets `revision` as its resourceVersion. DATA_LOSS when the bytes are not a
// change.
absl::StatusOr<Change> DecodeChange(const std::string& bytes, int64_t revision);

// A whole state for the log's base: every resource, resourceVersion kept.
std::string EncodeState(const std::map<Key, v1::Resource>& objects);
// DATA_LOSS when the bytes are not a state, or a resource has no version.
absl::StatusOr<std::map<Key, v1::Resource>> DecodeState(const std::string& bytes);

// Folds `change` into `objects` (a replay of the log).
void FoldChange(Change change, std::map<Key, v1::Resource>* objects);

}  // namespace nftproxy::server
