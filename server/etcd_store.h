// The desired state kept in etcd (issue 17): the write engine's SharedLog
// over server/etcd_log.h, and the follower thread that applies every
// node's changes to this node's engine.
//
// Data flow. A write through any node is validated against the node's state
// at the log entry it last applied, encoded (server/shared_log.h) and
// appended after that entry (EtcdLog::Append, guarded by the head's
// mod_revision). Only then does the node commit it to its kernel and reply.
// A writer that lost the race (ABORTED) catches up and re-runs the write, a
// few times (EngineOptions::shared_retries) before answering ABORTED. The
// follower watches P log/ and, on every event, reads the entries after the
// node's position (EtcdLog::ReadAfter: entries are keys, so a compacted
// watch history loses nothing) and applies them in order; a node's own
// entries are already applied (its position moved past them). A started
// node first replays the whole log into one state and commits the
// difference from its cached state (the state dir), so a node that starts
// while etcd is down serves its cache until etcd is back.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/etcd_client.h"
#include "server/etcd_log.h"
#include "server/shared_log.h"

namespace nftproxy::server {

class WriteEngine;

class EtcdSharedLog : public SharedLog {
 public:
  // ReadAfter resolves entries until their changes hold this many bytes.
  static constexpr size_t kMaxReadBytes = 64 << 20;
  EtcdSharedLog(EtcdClient* client, std::string prefix) : client_(client), prefix_(prefix), log_(client, prefix) {}
  absl::StatusOr<int64_t> Append(const LogPosition& after, const std::string& change) override;
  absl::StatusOr<std::vector<LogEntry>> ReadAfter(const LogPosition& after, size_t limit,
                                                 int64_t* read_revision) override;
  absl::StatusOr<std::optional<LogEntry>> ReadBase(int64_t* read_revision) override;
  absl::Status Trim(const LogPosition& at, const std::string& state) override;
  uint64_t BaseSeq() const override { return base_seq_.load(); }
  std::string Describe() const override;
  EtcdLog& log() { return log_; }
  EtcdClient* client() { return client_; }

 private:
  EtcdClient* const client_;
  const std::string prefix_;
  EtcdLog log_;
  std::atomic<uint64_t> base_seq_{0};
};

// The sequence number of the log entry stored under `key` (P log/<20 digits>).
absl::StatusOr<uint64_t> EntrySeq(const std::string& log_prefix, const std::string& key);

// Keeps `engine` at the log's head: replays the log when the engine's
// position is unknown (start-up), then catches up on every watch event;
// retries with a backoff while etcd cannot be reached, reporting it through
// WriteEngine::NoteSharedStore.
class EtcdFollower {
 public:
  EtcdFollower(EtcdSharedLog* log, WriteEngine* engine) : log_(log), engine_(engine) {}
  ~EtcdFollower() { Stop(); }
  void Start();
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();
  // Lets the engine trim the log after a catch-up (TrimSharedLog).
  void Trim();
  // Waits for `d` or until stopped or woken; true when stopped.
  bool Wait(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

  EtcdSharedLog* const log_;
  WriteEngine* const engine_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;  // a watch event came
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the watch ended
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace nftproxy::server
