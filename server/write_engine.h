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

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dataplane/dataplane.h"
#include "nftproxy/v1/nftproxy.pb.h"
#include "server/desired.h"
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
  // How much one resource may hold.
  ResourceLimits limits;
  // Writes taking at least this long are logged to stderr with the time of
  // each phase; infinite: none.
  absl::Duration log_writes_over = absl::InfiniteDuration();
};

class WriteEngine {
 public:
  WriteEngine(dp::Dataplane* dataplane, EngineOptions options)
      : dp_(dataplane), options_(std::move(options)), watch_(options_.watch_log_capacity) {}

  // Installs a state loaded at start-up (the first commit of this run).
  absl::Status Restore(State state) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes. Apply and Sync take the serialized request (see server/wire.h:
  // resources sent as the bytes they were stored from are not parsed); the
  // typed overloads serialize it first.
  absl::Status Apply(absl::string_view request, v1::ApplyResponse* resp) ABSL_LOCKS_EXCLUDED(mu_) {
    return ApplyAs("Apply", request, resp);
  }
  absl::Status Sync(absl::string_view request, v1::SyncResponse* resp) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Apply(const v1::ApplyRequest& req, v1::ApplyResponse* resp) {
    return Apply(req.SerializeAsString(), resp);
  }
  absl::Status Sync(const v1::SyncRequest& req, v1::SyncResponse* resp) {
    return Sync(req.SerializeAsString(), resp);
  }
  absl::Status Delete(const v1::DeleteRequest& req, v1::DeleteResponse* resp);

  // Reads.
  absl::StatusOr<v1::Resource> Get(const v1::ResourceRef& ref) const ABSL_LOCKS_EXCLUDED(mu_);
  // One page; see ListRequest.
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& req) const ABSL_LOCKS_EXCLUDED(mu_);
  // The installed ruleset, whole or of one service (see GetRulesetRequest).
  v1::GetRulesetResponse Ruleset(const v1::GetRulesetRequest& req) const ABSL_LOCKS_EXCLUDED(mu_);
  // The whole ruleset to `send` in pieces, rendered from a copy taken under
  // the lock, so that a slow reader holds up no write. Stops when `send`
  // returns false.
  void StreamRuleset(const std::function<bool(const v1::GetRulesetResponse&)>& send) const ABSL_LOCKS_EXCLUDED(mu_);
  v1::StatusResponse Status() const ABSL_LOCKS_EXCLUDED(mu_);

  // Streams changes; see WatchHub::Watch.
  absl::Status Watch(const v1::WatchRequest& req, const std::function<bool()>& cancelled,
                     const std::function<bool(const v1::WatchEvent&)>& send) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every Watch stream (UNAVAILABLE) and refuses new ones.
  void Shutdown() { watch_.Shutdown(); }

 private:
  // Runs `body` as one write under the lock: a fresh Write, the slow-write
  // log, and its leftovers freed after.
  absl::Status RunWrite(const char* method, const std::string& source, size_t resources, bool dry_run,
                        const std::function<absl::Status(Write*)>& body) ABSL_LOCKS_EXCLUDED(mu_);
  // Apply, logged as `method` (Delete is an Apply of deletes only).
  absl::Status ApplyAs(const char* method, absl::string_view request, v1::ApplyResponse* resp)
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
  // Sends the whole of `d` to the dataplane (the first commit of a run).
  absl::Status ApplyAllLocked(const Desired& d, Phases* phases = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs a write: refused ones as warnings with their code and message,
  // those that took at least options_.log_writes_over with the time of each
  // phase, the others at debug level; a refused one also becomes the last
  // error that Status reports.
  void LogWrite(const char* method, const std::string& source, size_t resources, bool dry_run, const Write& w,
                const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteSyncLocked(absl::Time start, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers `s` as the last error (Status shows it until the next one).
  void NoteError(absl::string_view what, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StateRules Rules() const;

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
  absl::Time last_error_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  WatchHub watch_;
};

}  // namespace nftproxy::server
