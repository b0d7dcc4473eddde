// Notices changes to nftproxy's table that nftproxy did not make (someone
// ran `nft delete table`, flushed a chain, deleted a map element), so that
// the server can put the desired ruleset back.
//
// How: a netlink socket in the nf_tables notification group. Every
// committed batch, whoever sent it, is announced object by object and ends
// with a NEWGEN message naming the process; a batch that touched
// `inet <table>` is drift. nftproxy's own batches are not announced to it:
// the monitor leaves the group around each of its commits (Bracket), and
// checks the ruleset generation before and after: any other batch committed
// in between moved it by more than nftproxy's one, and counts as possible
// drift. As a safety net (lost notifications, ENOBUFS), the generation is
// also compared every second with the last one accounted for.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace nftproxy::dp {

class DriftMonitor {
 public:
  // `drift(what)` is called on the monitor's thread with a description of
  // the change ("nft[1234] changed inet nftproxy: deleted table"), at most
  // once per batch seen.
  using Handler = std::function<void(const std::string& what)>;
  static absl::StatusOr<std::unique_ptr<DriftMonitor>> Start(const std::string& table, Handler drift);
  ~DriftMonitor();
  DriftMonitor(const DriftMonitor&) = delete;
  DriftMonitor& operator=(const DriftMonitor&) = delete;

  // How many generations one of our commits may have made: a batch the
  // kernel took makes one, no batch (nothing to send) or a refused one none,
  // one whose replies were lost either.
  struct Moves {
    uint32_t min = 0, max = 0;
  };
  // Runs `commit` (at most one nftproxy batch) unannounced to the monitor; a
  // batch by anyone else meanwhile is reported.
  void Bracket(const std::function<Moves()>& commit) ABSL_LOCKS_EXCLUDED(mu_);

  // The ruleset generation (NFT_MSG_GETGEN), for tests.
  absl::StatusOr<uint32_t> Generation() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  DriftMonitor(std::string table, Handler drift, int events_fd, int query_fd);
  void Loop();
  // Reads every queued notification; reports a batch that touched the table.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<uint32_t> GenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetMembership(bool on);

  const std::string table_;
  const Handler drift_;
  const int events_fd_;  // in NFNLGRP_NFTABLES, except during a Bracket
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  const int query_fd_ ABSL_GUARDED_BY(mu_);  // GETGEN requests
  uint32_t seq_ ABSL_GUARDED_BY(mu_) = 1;
  // The newest generation accounted for: our own commits and the batches
  // whose notifications were read.
  uint32_t known_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool in_bracket_ ABSL_GUARDED_BY(mu_) = false;
  // The batch being read touched the table: what it did, so far.
  std::string touched_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace nftproxy::dp
