// The gRPC service: converts requests to state changes, validates them,
// commits them through the dataplane, and only then makes them visible.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dataplane/dataplane.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"
#include "server/desired.h"
#include "common/parallel.h"
#include "server/store.h"
#include "server/validate.h"

namespace nftproxy::server {

struct Write;
class Phases;

struct ServiceOptions {
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
  // Apply and Sync calls taking at least this long are logged to stderr
  // with the time of each phase; infinite: none.
  absl::Duration log_writes_over = absl::InfiniteDuration();
};

// Apply and Sync are served from their request bytes (see server/wire.h);
// the other methods through the generated types.
using ProxyServiceBase = v1::Proxy::WithRawCallbackMethod_Apply<v1::Proxy::WithRawCallbackMethod_Sync<v1::Proxy::Service>>;

class ProxyService final : public ProxyServiceBase {
 public:
  ProxyService(dp::Dataplane* dataplane, ServiceOptions options)
      : dp_(dataplane), options_(std::move(options)) {}

  // Installs a state loaded at start-up (the first commit of this run).
  absl::Status Restore(State state);

  grpc::ServerUnaryReactor* Apply(grpc::CallbackServerContext*, const grpc::ByteBuffer*, grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Sync(grpc::CallbackServerContext*, const grpc::ByteBuffer*, grpc::ByteBuffer*) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest*, v1::Resource*) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*, v1::ListResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest*, v1::DeleteResponse*) override;
  grpc::Status GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*, v1::GetRulesetResponse*) override;
  grpc::Status Watch(grpc::ServerContext*, const v1::WatchRequest*, grpc::ServerWriter<v1::WatchEvent>*) override;
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusResponse*) override;

  // Ends every Watch stream (with UNAVAILABLE) and refuses new ones. Call it
  // before grpc::Server::Shutdown so that shutdown does not wait for them;
  // without it they end when the server's shutdown deadline cancels them.
  void Shutdown();

  // The transport-free cores of the RPCs, for tests.
  absl::Status DoApply(v1::ApplyRequest req, v1::ApplyResponse* resp);
  absl::Status DoSync(v1::SyncRequest req, v1::SyncResponse* resp);
  // The same from the serialized request, as the gRPC methods receive it.
  absl::Status ApplyBytes(absl::string_view request, v1::ApplyResponse* resp);
  absl::Status SyncBytes(absl::string_view request, v1::SyncResponse* resp);
  // Streams events to `send` until it returns false (CANCELLED), `cancelled`
  // returns true (polled while idle; CANCELLED), the client falls behind the
  // change log (OUT_OF_RANGE) or Shutdown is called (UNAVAILABLE).
  absl::Status DoWatch(const v1::WatchRequest& req, const std::function<bool()>& cancelled,
                       const std::function<bool(const v1::WatchEvent&)>& send);

 private:
  template <typename Response>
  grpc::ServerUnaryReactor* RunBytes(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                     grpc::ByteBuffer* resp,
                                     absl::Status (ProxyService::*method)(absl::string_view, Response*));

  // Runs `body` as one write under the lock: a fresh Write, the slow-write
  // log, and its leftovers freed after.
  absl::Status RunWrite(const char* method, const std::string& source, size_t resources,
                        const std::function<absl::Status(Write*)>& body);
  absl::Status ApplyLocked(const v1::ApplyRequest& req, const std::vector<absl::string_view>& upserts, Write* w,
                           v1::ApplyResponse* resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SyncLocked(const v1::SyncRequest& req, const std::vector<absl::string_view>& resources, Write* w,
                          v1::SyncResponse* resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The end of an Apply or Sync whose changes `w` staged in desired_:
  // nothing to do when nothing changed, else validate and commit; rolls the
  // changes back on error or dry run. *revision is what the caller reports.
  // `report` (may be null) fills the caller's reply from desired_ once the
  // write is known to succeed (it may run on another thread meanwhile, and
  // must only read desired_).
  absl::Status FinishLocked(Write* w, bool dry_run, uint64_t* revision, const std::function<void()>& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitLocked(Write* w, bool dry_run, const std::function<void()>& report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the whole of `d` to the dataplane (the first commit of a run).
  absl::Status ApplyAllLocked(const Desired& d, Phases* phases = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs a write that took at least options_.log_writes_over.
  void LogWrite(const char* method, const std::string& source, size_t resources, const Write& w,
                const absl::Status& s) const;
  void NoteSyncLocked(absl::Time start, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StateRules Rules() const;

  dp::Dataplane* const dp_;
  const ServiceOptions options_;
  absl::Mutex mu_;
  Desired desired_ ABSL_GUARDED_BY(mu_);
  // The dataplane holds the whole model (after the first successful Apply);
  // from then on writes send only the services they change.
  bool dp_full_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_sync_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration last_sync_duration_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // Changes for Watch; signalled on every commit and on Shutdown.
  ChangeLog log_ ABSL_GUARDED_BY(mu_){options_.watch_log_capacity};
  absl::CondVar committed_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Runs Apply and Sync calls; last, so that it finishes them before the
  // rest of the service goes away.
  TaskThread calls_;
};

grpc::Status ToGrpc(const absl::Status& s);

}  // namespace nftproxy::server
