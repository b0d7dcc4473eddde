// An append-only log of changes in etcd, each committed atomically whatever
// its size, each guarded by the revision of the log's head the writer last
// saw: the ordering half of keeping the desired state in etcd
// (server/etcd_store.h puts the write engine's changes here and applies the
// log to every node).
//
// Key layout under the prefix P (for example /nftproxy/):
//   P head                 the newest entry's sequence number (decimal)
//   P log/<seq, 20 digits> one committed change: "I" + the change's bytes
//                          (inline), or "B <blob> <chunks> <size> <crc32c>"
//   P blob/<blob>/<chunk>  a change too large for one etcd request, in
//                          chunks of at most 1 MiB, written before its entry;
//                          <blob> starts with the entry's 20-digit number
//   P base                 "S <seq> <revision> <chunks> <size> <crc32c>":
//                          the state after entry <seq> (committed at
//                          <revision>), whose entries up to <seq> are gone
//   P baseblob/<seq>/<chunk>  that state (v1::ApplyRequest of every stored
//                          resource, resourceVersions kept), in chunks
//
// Trimming (Trim): a node writes the state at an entry it applied as base
// chunks, then one transaction, guarded by that entry's mod_revision (so a
// base only moves forward), puts `base` and deletes the entries, blobs and
// older base chunks up to it. A reader behind the base reads it whole.
//
// Atomicity: etcd takes at most 128 operations and 1.5 MiB per request by
// default. A change up to kInlineLimit is one transaction; a larger one is
// first written as blob chunks (one transaction each, invisible: nothing
// refers to them yet), then one small transaction compares the head's
// mod_revision with the one the writer validated against and puts the head
// and the entry together. So a reader either sees the entry, whose chunks
// are all there already, or nothing; a writer that lost the race gets
// ABORTED and its chunks are deleted (best effort; a writer that dies
// between the two steps leaves chunks no entry refers to). The etcd
// revision of that last transaction is the change's revision.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/etcd_client.h"

namespace nftproxy::server {

class EtcdLog {
 public:
  // Changes up to this many bytes go inline in their entry.
  static constexpr size_t kInlineLimit = 512 << 10;
  static constexpr size_t kChunkSize = 1 << 20;

  EtcdLog(EtcdClient* client, std::string prefix) : client_(client), prefix_(std::move(prefix)) {}

  struct Head {
    uint64_t seq = 0;           // 0: the log is empty
    int64_t mod_revision = 0;   // the head key's mod_revision (0: no head)
    int64_t revision = 0;       // etcd's revision when it was read
  };
  absl::StatusOr<Head> ReadHead();

  // Appends `change` after `after` (the head the caller validated against):
  // the etcd revision it was committed at, or ABORTED when another writer
  // appended first (read the head again, re-validate, retry), or the
  // etcd error. When the final transaction fails without an answer (a
  // timeout, a leader change, a lost connection), the entry is looked up:
  // there with this change's value, the append succeeded (its revision);
  // there with another, ABORTED; not there (or etcd still not answering),
  // the error, saying that the outcome is unknown (etcd may still commit it;
  // every node then applies it like any entry).
  absl::StatusOr<int64_t> Append(const Head& after, const std::string& change);

  // Up to `limit` entries after entry `seq`, in order (catching up: entries
  // are keys, so this works whatever etcd compacted, unlike a watch from an
  // old revision), read at one revision (`*revision`, 0: the newest; set to
  // the revision read at, for the next page and the watch that follows).
  absl::StatusOr<std::vector<EtcdKeyValue>> ReadAfter(uint64_t seq, int64_t limit, int64_t* revision);

  // An entry as it is stored (an etcd key under log/ and its value): its
  // change's bytes, read from its blob when it has one (at `revision`, the
  // entry's own), checked against the size and checksum.
  absl::StatusOr<std::string> Resolve(const EtcdKeyValue& entry);

  // The base (see above); nullopt: none (the log starts at entry 1). Read at
  // *revision (0: the newest; set to the revision read at).
  struct Base {
    uint64_t seq = 0;
    int64_t revision = 0;
    size_t chunks = 0, size = 0;
    uint32_t crc = 0;
  };
  absl::StatusOr<std::optional<Base>> ReadBase(int64_t* revision);
  // The base's state, from its chunks (read at `revision`).
  absl::StatusOr<std::string> ReadBaseState(const Base& base, int64_t revision);
  // Makes `state` (the state after entry `seq`, committed at `revision`)
  // the base and deletes what it replaces; FAILED_PRECONDITION when entry
  // `seq` is gone or another (a later base, or a new log).
  absl::Status Trim(uint64_t seq, int64_t revision, const std::string& state);

  std::string HeadKey() const { return prefix_ + "head"; }
  std::string BaseKey() const { return prefix_ + "base"; }
  std::string BaseBlobPrefix() const { return prefix_ + "baseblob/"; }
  std::string LogPrefix() const { return prefix_ + "log/"; }
  std::string BlobPrefix() const { return prefix_ + "blob/"; }
  std::string EntryKey(uint64_t seq) const;

 private:
  absl::Status DeleteBlob(const std::string& blob);
  // Writes `bytes` as chunks under `prefix` (one transaction each).
  absl::Status WriteChunks(const std::string& prefix, const std::string& bytes, size_t* chunks);
  // Reads back what WriteChunks wrote, checked; `what` names it in errors.
  absl::StatusOr<std::string> ReadChunks(const std::string& prefix, size_t chunks, size_t size, uint32_t crc,
                                         int64_t revision, const std::string& what);

  EtcdClient* const client_;
  const std::string prefix_;
};

}  // namespace nftproxy::server
