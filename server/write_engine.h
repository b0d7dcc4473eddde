// The write engine: the server's core, without any transport. It owns the
// desired state and turns each write into one all-or-nothing change of the
// state, the kernel (through the Dataplane), the saved state (through the
// StateStore) and the Watch streams (through the WatchHub):
//
//   examine (all cores) -> stage in place (Txn) -> validate the changed keys
//   -> build the affected services' model -> Dataplane::Update -> record,
//   publish, reply;  any error before the kernel took it: Txn::Rollback.
//
// Writes run one at a time under mu_; reads take the same lock briefly.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/parallel.h"
#include "dataplane/dataplane.h"
#include "nftproxy/v1/nftproxy.pb.h"
#include "server/authz.h"
#include "server/desired.h"
#include "server/dns_server.h"
#include "server/health_ports.h"
#include "server/metrics.h"
#include "server/shared_log.h"
#include "server/staging.h"
#include "server/state_store.h"
#include "server/validate.h"
#include "server/watch_hub.h"

namespace nftproxy::server {

struct EngineOptions {
  std::string node_name;
  // Cluster CIDRs and NodePort addresses (server flags).
  dp::NodeSettings node;
  // Allowed NodePort range, inclusive.
  uint16_t node_port_min = 30000;
  uint16_t node_port_max = 32767;
  // Where each commit is recorded (not owned); null: nowhere.
  StateStore* store = nullptr;
  // How many change events Watch can resume from.
  size_t watch_log_capacity = ChangeLog::kDefaultCapacity;
  // Watch streams open at once (--max-watch-streams); more are refused with
  // RESOURCE_EXHAUSTED.
  size_t max_watch_streams = 8192;
  // A Watch stream more than this many events behind the newest for over a
  // second is ended with ABORTED and the revision to resume from
  // (--watch-buffer-events).
  size_t watch_buffer_events = 1000;
  // How much one resource may hold.
  ResourceLimits limits;
  // Writes taking at least this long are logged to stderr with the time of
  // each phase; infinite: none.
  absl::Duration log_writes_over = absl::InfiniteDuration();
  // Where the engine reports what it does (not owned); null: nowhere.
  EngineMetrics* metrics = nullptr;
  // The health-check node ports (not owned; server/health_ports.h), changed
  // within each write: opened before the kernel commit, closed after it;
  // null: none.
  HealthPortSink* health_ports = nullptr;
  // The DNS responder (not owned; server/dns_server.h), updated within each
  // write after the kernel commit, before the reply; null: none.
  DnsSink* dns = nullptr;
  // The log of changes shared with other nodes (not owned; server/
  // shared_log.h); null: this node alone. With one, a change is committed
  // to the log before the kernel, revisions are the log's, and writes fail
  // UNAVAILABLE until the node has caught up with the log once
  // (FollowSharedLog).
  SharedLog* shared = nullptr;
  // A write that lost the race to the log is re-run after catching up this
  // many times, then answered ABORTED.
  int shared_retries = 3;
  // Once this node is this many entries past the log's base, it folds them
  // into a new base (TrimSharedLog); 0: never.
  uint64_t shared_trim_entries = 1000;
};

class WriteEngine {
 public:
  WriteEngine(dp::Dataplane* dataplane, EngineOptions options)
      : dp_(dataplane),
        options_(std::move(options)),
        watch_(WatchOptions{options_.watch_log_capacity, options_.max_watch_streams, options_.watch_buffer_events}) {
    if (options_.shared != nullptr) {
      // Until FollowSharedLog first succeeds (Status and Health say so).
      shared_error_ = "not read yet since this server started";
      shared_error_since_ = absl::Now();
    }
  }

  // Installs a state loaded at start-up (the first commit of this run).
  absl::Status Restore(State state) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes. Apply and Sync take the serialized request (see server/wire.h:
  // resources sent as the bytes they were stored from are not parsed); the
  // typed overloads serialize it first. `scope` (null: anything) is what the
  // caller may change (server/authz.h): a write that would change anything
  // outside it is refused with PERMISSION_DENIED and changes nothing.
  absl::Status Apply(absl::string_view request, v1::ApplyResponse* resp, const Scope* scope = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_) {
    return ApplyAs("Apply", request, resp, scope);
  }
  absl::Status Sync(absl::string_view request, v1::SyncResponse* resp, const Scope* scope = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Apply(const v1::ApplyRequest& req, v1::ApplyResponse* resp, const Scope* scope = nullptr) {
    return Apply(req.SerializeAsString(), resp, scope);
  }
  absl::Status Sync(const v1::SyncRequest& req, v1::SyncResponse* resp, const Scope* scope = nullptr) {
    return Sync(req.SerializeAsString(), resp, scope);
  }
  absl::Status Delete(const v1::DeleteRequest& req, v1::DeleteResponse* resp, const Scope* scope = nullptr);

  // Reads.
  absl::StatusOr<v1::Resource> Get(const v1::ResourceRef& ref) const ABSL_LOCKS_EXCLUDED(mu_);
  // One page; see ListRequest.
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& req) const ABSL_LOCKS_EXCLUDED(mu_);
  // The installed ruleset, whole or of one service (see GetRulesetRequest).
  // With req.kernel, compared with the kernel's table (kernel_differences).
  absl::StatusOr<v1::GetRulesetResponse> Ruleset(const v1::GetRulesetRequest& req) const ABSL_LOCKS_EXCLUDED(mu_);
  // The whole ruleset to `send` in pieces, rendered from a copy taken under
  // the lock, so that a slow reader holds up no write. Stops when `send`
  // returns false. With `kernel`, the first piece says where the kernel's
  // table differs from that copy (read outside the lock too).
  absl::Status StreamRuleset(bool kernel, const std::function<bool(const v1::GetRulesetResponse&)>& send) const
      ABSL_LOCKS_EXCLUDED(mu_);
  v1::StatusResponse Status() const ABSL_LOCKS_EXCLUDED(mu_);
  // The kernel's connection counters of the service ports `keep` accepts
  // (namespace, service), read without the lock (dp::Dataplane::ReadCounters).
  absl::StatusOr<v1::GetCountersResponse> Counters(
      const std::function<bool(const std::string& ns, const std::string& service)>& keep) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // What `nftproxy trace` needs to name tickets and endpoints
  // (dp::Dataplane::NamesForTrace), with endpoint names from the stored
  // EndpointSlices.
  absl::StatusOr<dp::TraceNames> NamesForTrace() const ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `fn` (a kernel change outside nftproxy's table: the trace table)
  // under the write lock, so that it never falls inside one of the
  // dataplane's bracketed commits, where the drift monitor would count it as
  // another program's batch (drift_monitor.h).
  absl::Status RunBetweenCommits(const std::function<absl::Status()>& fn) const ABSL_LOCKS_EXCLUDED(mu_);

  // Opens a Watch stream (see WatchHub::Open): the events `req` asks for,
  // serialized, pulled with WatchCursor::Next without blocking; `wake` is
  // called (on the hub's threads) when a Next that found nothing may find
  // more. The initial state (since_revision 0) is read a page at a time on
  // the hub's thread, under the lock only for each page. The caller must
  // Close the cursor before the engine goes away.
  absl::StatusOr<std::shared_ptr<WatchCursor>> OpenWatch(const v1::WatchRequest& req, std::function<void()> wake)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same, blocking (tests and simple callers): calls `send` with each
  // event until it returns false (CANCELLED), `cancelled` returns true
  // (polled while idle; CANCELLED) or the stream ends (see WatchCursor::Next).
  absl::Status Watch(const v1::WatchRequest& req, const std::function<bool()>& cancelled,
                     const std::function<bool(const v1::WatchEvent&)>& send) ABSL_LOCKS_EXCLUDED(mu_);
  // Watch streams open now.
  const WatchHub& watch_hub() const { return watch_; }
  // What the health endpoints report (server/metrics.h); takes only a
  // small lock of its own, never the engine's.
  HealthState Health() const ABSL_LOCKS_EXCLUDED(health_mu_, shared_mu_);
  // With options.shared: brings this node to the log's head. The first
  // time (the position in the log unknown: start-up) the whole log is
  // replayed into one state and its difference from the current (cached)
  // state committed; then the entries after the node's position are applied
  // in order. Returns the store revision up to which every entry is
  // applied (where a watch of the log continues). Reads the log without
  // the engine's lock; reports the outcome with NoteSharedStore.
  absl::StatusOr<int64_t> FollowSharedLog() ABSL_LOCKS_EXCLUDED(mu_);
  // Folds the shared log's entries up to this node's position into a new
  // base once it is EngineOptions::shared_trim_entries past the last one
  // (the follower calls it after each catch-up). Another node having
  // trimmed first is no error.
  absl::Status TrimSharedLog() ABSL_LOCKS_EXCLUDED(mu_);
  // The shared store's condition as Status reports it (OK: reachable and
  // followed). While it is not OK, Health counts a change as pending since
  // the first error.
  void NoteSharedStore(const absl::Status& s) ABSL_LOCKS_EXCLUDED(shared_mu_);
  // The position this node applied the shared log up to; seq 0 and
  // revision 0 before the first entry, nullopt when not known yet.
  std::optional<LogPosition> SharedPosition() const ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every Watch stream (UNAVAILABLE) and refuses new ones.
  void Shutdown() { watch_.Shutdown(); }

  // From now on a change to the table that this engine did not make (see
  // dataplane/drift_monitor.h) is logged, counted in Status and undone with
  // a full commit of the desired state, on a thread of the engine's.
  // Unimplemented when the dataplane cannot watch its table.
  absl::Status RepairDrift() ABSL_LOCKS_EXCLUDED(mu_);
  ~WriteEngine();

 private:
  // Runs `body` as one write under the lock: a fresh Write, the slow-write
  // log, and its leftovers freed after.
  absl::Status RunWrite(const char* method, const std::string& source, size_t resources, bool dry_run,
                        const Scope* scope, const std::function<absl::Status(Write*)>& body)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Apply, logged as `method` (Delete is an Apply of deletes only).
  absl::Status ApplyAs(const char* method, absl::string_view request, v1::ApplyResponse* resp, const Scope* scope)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status ApplyLocked(const v1::ApplyRequest& req, const std::vector<absl::string_view>& upserts, Write* w,
                           v1::ApplyResponse* resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SyncLocked(const v1::SyncRequest& req, const std::vector<absl::string_view>& resources, Write* w,
                          v1::SyncResponse* resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The end of a write whose changes `w` staged in desired_: nothing to do
  // when nothing changed, else validate and commit; rolls the changes back
  // on error or dry run. *revision is what the caller reports. `report`
  // (may be null) fills the caller's reply from desired_ once the write is
  // known to succeed; it may run on another thread while this one waits
  // (and holds mu_), and must only read desired_.
  absl::Status FinishLocked(Write* w, bool dry_run, uint64_t* revision, const std::function<void()>& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitLocked(Write* w, bool dry_run, const std::function<void()>& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands options_.health_ports the health-check node ports of the services
  // `txn` may have changed (null: of every service in `d`, the whole set).
  absl::Status PrepareHealthPortsLocked(const Desired& d, const Txn* txn, bool best_effort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands options_.dns what DNS serves for `affected` (null: for every
  // service in `d`, the whole set).
  void UpdateDnsLocked(const Desired& d, const std::set<std::pair<std::string, std::string>>* affected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the whole of `d` to the dataplane (the first commit of a run).
  absl::Status ApplyAllLocked(const Desired& d, Phases* phases = nullptr, dp::ApplyResult* out = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports a dataplane commit of `kind` (adopt, full, delta) to the metrics.
  void NoteCommit(const char* kind, const dp::ApplyResult& result, const absl::Status& s);
  // Adds `sign` times the resources and endpoints of `r` to the metrics'
  // gauges.
  void CountResource(const v1::Resource& r, int sign);
  // Logs a write: refused ones as warnings with their code and message,
  // those that took at least options_.log_writes_over with the time of each
  // phase, the others at debug level; a refused one also becomes the last
  // error that Status reports.
  void LogWrite(const char* method, const std::string& source, size_t resources, bool dry_run, const Write& w,
                const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteSyncLocked(absl::Time start, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers `s` as the last error (Status shows it until the next one).
  // DATA_LOSS for a change the kernel took and the store did not.
  static absl::Status UnsavedError(const absl::Status& saved);
  void NoteError(absl::string_view what, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StateRules Rules() const;
  // Applies `entries` (read after shared_pos_, in order) to desired_ and
  // the kernel, each as one commit at its revision.
  absl::Status ApplyEntriesLocked(const std::vector<LogEntry>& entries) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits `change` (resources with their versions) as one replayed write
  // at `revision`.
  absl::Status ApplyChangeLocked(Change change, int64_t revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the entries after shared_pos_ under the lock and applies them (a
  // writer that lost the race).
  absl::Status CatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> FollowSharedLogOnce() ABSL_LOCKS_EXCLUDED(mu_);
  // At start-up, when the log is empty and the cached state is not: appends
  // the cached state as entry 1 (see the .cc); returns the revision read at.
  absl::StatusOr<int64_t> SeedSharedLogLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends the change `w` staged to the shared log after shared_pos_; on
  // success every changed resource's version and the revision are the
  // entry's.
  absl::Status AppendLocked(Write* w, const std::vector<Key>& changed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `s` (the shared store's error) as a write's answer: names the store, and
  // carries an (empty) ErrorDetail so that clients see the server answered.
  absl::Status SharedStoreError(const absl::Status& s) const;

  dp::Dataplane* const dp_;
  const EngineOptions options_;
  mutable absl::Mutex mu_;
  Desired desired_ ABSL_GUARDED_BY(mu_);
  // The dataplane holds the whole model (after the first successful Apply);
  // from then on writes send only the services they change.
  bool dp_full_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_sync_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration last_sync_duration_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // A committed change could not be saved: the store is behind the state
  // until a save succeeds (each later write, even an unchanged one, tries).
  bool unsaved_ ABSL_GUARDED_BY(mu_) = false;
  // The shared log's entry desired_ is at (options_.shared); unknown until
  // the first FollowSharedLog.
  std::optional<LogPosition> shared_pos_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex shared_mu_;
  std::string shared_error_ ABSL_GUARDED_BY(shared_mu_);
  absl::Time shared_error_since_ ABSL_GUARDED_BY(shared_mu_) = absl::InfinitePast();
  absl::Time last_error_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  WatchHub watch_;
  // Drift (RepairDrift).
  // Called on the monitor's thread, or on a writer's while it holds mu_.
  void OnDrift(const std::string& what) ABSL_LOCKS_EXCLUDED(drift_mu_);
  // Reinstalls the table from what the dataplane holds, on repairs_.
  void QueueRepair();
  bool watching_drift_ = false;
  std::atomic<bool> repair_queued_{false};
  // Its own lock: drift is reported while a commit holds mu_.
  mutable absl::Mutex drift_mu_;
  uint64_t drift_repairs_ ABSL_GUARDED_BY(drift_mu_) = 0;
  std::string last_drift_ ABSL_GUARDED_BY(drift_mu_);
  absl::Time last_drift_time_ ABSL_GUARDED_BY(drift_mu_) = absl::InfinitePast();
  // Health (server/metrics.h HealthState): writes waiting or under way, by
  // arrival; when a drift repair was queued (InfiniteFuture: none pending).
  mutable absl::Mutex health_mu_;
  std::multiset<absl::Time> pending_writes_ ABSL_GUARDED_BY(health_mu_);
  absl::Time repair_pending_since_ ABSL_GUARDED_BY(health_mu_) = absl::InfiniteFuture();
  absl::Time last_updated_ ABSL_GUARDED_BY(health_mu_) = absl::Now();
  std::atomic<bool> ready_{false};
  // Last: its queued repairs run (or are dropped) before the rest goes.
  TaskThread repairs_;
};

}  // namespace nftproxy::server
