// The real dataplane: keeps the installed model, compiles only the services
// a change touches, diffs their old and new objects and writes that diff
// through a RulesetWriter (NftWriter in production, a fake in tests).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/conntrack.h"
#include "dataplane/dataplane.h"
#include "dataplane/drift_monitor.h"
#include "dataplane/ruleset.h"
#include "dataplane/ruleset_writer.h"

namespace nftproxy::dp {

class NftDataplane final : public Dataplane {
 public:
  // On the kernel: NftWriter and conntrack.
  // On the kernel. A table of that name that nftproxy did not create (it
  // lacks kTableComment) is FailedPrecondition and left alone, unless
  // `adopt_unmarked` (a table made by an nftproxy older than the mark).
  static absl::StatusOr<std::unique_ptr<NftDataplane>> Create(const std::string& table,
                                                             bool adopt_unmarked = false);
  // With the given writer and flusher.
  static std::unique_ptr<NftDataplane> Create(const std::string& table, std::unique_ptr<RulesetWriter> writer,
                                              std::unique_ptr<FlowFlusher> flusher);

  absl::Status Apply(const Model& model, ApplyResult* result) override;
  absl::Status Update(const ModelChange& change, ApplyResult* result) override;
  std::string Installed() const override;
  std::string InstalledService(const std::string& key) const override;
  std::unique_ptr<InstalledRuleset> Snapshot() const override;
  std::string Table() const override { return "inet " + table_; }
  absl::Status Reinstall(ApplyResult* result) override;
  // Only on the kernel (the Create that opens a NftWriter).
  absl::Status WatchDrift(std::function<void(const std::string& what)> drift) override;
  absl::StatusOr<TraceNames> NamesForTrace() const override;
  absl::StatusOr<std::vector<PortConnections>> ReadCounters(const ServiceFilter& keep) const override;

  // What was last committed, as a model (services sorted by key) and the
  // service-port indexes it uses; for tests that recompile it from scratch.
  Model InstalledModel() const;
  const IndexMap& indexes() const { return indexes_; }
  uint32_t shards() const { return shards_; }

 private:
  NftDataplane(std::string table, std::unique_ptr<RulesetWriter> writer, std::unique_ptr<FlowFlusher> flusher)
      : table_(std::move(table)), writer_(std::move(writer)), flusher_(std::move(flusher)) {}

  // Replaces the whole table with `services` under `node`.
  absl::Status CommitFull(const Model& model, ApplyResult* result);
  // The first commit of a run, when the kernel holds a table a previous run
  // left: only the difference (adopt.h). FailedPrecondition (or another
  // error) when it cannot be adopted; then nothing was changed.
  // `known`: the indexes to keep (see PlanAdoption).
  absl::Status Adopt(const Model& model, ApplyResult* result, const IndexMap* known = nullptr);
  // Records what a commit of the whole of `rs` (for `services`) installed.
  void Installed(Ruleset* rs, std::map<std::string, Service> services, const std::map<FlowTarget, int64_t>& udp,
                 ApplyResult* r);
  // Deletes the UDP conntrack entries of endpoints whose last reference went.
  void ForgetUdpTargets(const std::vector<FlowTarget>& gone, ApplyResult* result);
  // An unused index (the lowest free one), recorded in *taken.
  uint32_t NewIndex(std::vector<uint32_t>* taken);

  std::string table_;
  std::unique_ptr<RulesetWriter> writer_;
  std::unique_ptr<FlowFlusher> flusher_;
  bool on_kernel_ = false;
  // Set by WatchDrift; brackets every commit.
  std::unique_ptr<DriftMonitor> monitor_;
  // Runs one writer commit, bracketed by the monitor when there is one.
  // `stats` is what `commit` fills in.
  absl::Status Commit(const std::function<absl::Status()>& commit, const CommitStats& stats);
  // False until the first commit: the table a previous run left keeps
  // serving until then.
  bool committed_ = false;
  // Set when a commit's outcome is unknown (kUnknown: sent, but its replies
  // were lost to ENOBUFS or truncated): it may have been applied, so the
  // next Apply/Update rewrites the whole table instead of sending a delta
  // against what we believe is installed. Cleared by a full commit.
  bool needs_full_ = false;
  NodeSettings node_;  // normalised (network addresses)
  std::map<std::string, Service> services_;
  IndexMap indexes_;
  // Indexes below next_index_ that no service port holds.
  std::set<uint32_t> free_indexes_;
  uint32_t next_index_ = 0;
  uint32_t shards_ = 0;
  // References to each address-set element (see Ruleset).
  std::map<IpAddr, uint32_t> cluster_ip_refs_;
  std::map<IpAddr, uint32_t> hairpin_refs_;
  // UDP endpoints with how many service ports use them; those whose count
  // drops to zero get their conntrack entries deleted.
  std::map<FlowTarget, uint32_t> udp_refs_;
  // The counter objects last committed, for ReadCounters on other threads.
  mutable absl::Mutex names_mu_;
  std::set<std::string> counter_names_ ABSL_GUARDED_BY(names_mu_);
};

}  // namespace nftproxy::dp
