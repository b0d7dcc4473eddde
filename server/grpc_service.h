// The gRPC adapter: nftproxy.v1.Proxy on top of the WriteEngine. It only
// moves requests and replies between gRPC and the engine, asks the
// authorization policy first (server/authz.h) and turns absl::Status into
// grpc::Status (with the ErrorDetail in the status details); it makes no
// other decisions.
//
// Every method is a raw callback method: no thread is held per call or per
// stream, and the adapter parses each request itself, so that a malformed one
// is INVALID_ARGUMENT (gRPC's own parsing would answer INTERNAL). Writes run
// one at a time on one thread (a commit can take seconds, too long for
// gRPC's callback threads), reads on another; at most kMaxWaitingCalls wait
// for either, more are RESOURCE_EXHAUSTED.
#pragma once

#include <atomic>

#include "common/parallel.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"
#include "server/authz.h"
#include "server/write_engine.h"

namespace nftproxy::server {

using ProxyServiceBase = v1::Proxy::WithRawCallbackMethod_Trace<v1::Proxy::WithRawCallbackMethod_Apply<v1::Proxy::WithRawCallbackMethod_Sync<
    v1::Proxy::WithRawCallbackMethod_Get<v1::Proxy::WithRawCallbackMethod_List<
        v1::Proxy::WithRawCallbackMethod_Delete<v1::Proxy::WithRawCallbackMethod_GetRuleset<
            v1::Proxy::WithRawCallbackMethod_StreamRuleset<v1::Proxy::WithRawCallbackMethod_Watch<
                v1::Proxy::WithRawCallbackMethod_Status<v1::Proxy::WithRawCallbackMethod_GetCounters<
                    v1::Proxy::Service>>>>>>>>>>>;

class ProxyService final : public ProxyServiceBase {
 public:
  // Calls waiting for the write or the read thread, beyond which new ones
  // are refused; concurrent StreamRuleset calls (each renders on a thread).
  static constexpr int kMaxWaitingCalls = 1024;
  static constexpr int kMaxRulesetStreams = 4;
  // Concurrent traces (each holds a thread and the one trace table).
  static constexpr int kMaxTraces = 1;

  // `insecure_tcp`: the server serves plaintext TCP (--insecure-listen).
  ProxyService(WriteEngine* engine, const PolicyHolder* policy, bool insecure_tcp)
      : engine_(engine), policy_(policy), insecure_tcp_(insecure_tcp) {}
  // Adds to every Status reply what the engine does not know (serve's
  // manifest directories). Set before the server starts.
  void SetStatusHook(std::function<void(v1::StatusResponse*)> hook) { status_hook_ = std::move(hook); }

  using Unary = grpc::ServerUnaryReactor;
  using Stream = grpc::ServerWriteReactor<grpc::ByteBuffer>;
  using Ctx = grpc::CallbackServerContext;
  using Bytes = grpc::ByteBuffer;
  Unary* Apply(Ctx*, const Bytes*, Bytes*) override;
  Unary* Sync(Ctx*, const Bytes*, Bytes*) override;
  Unary* Delete(Ctx*, const Bytes*, Bytes*) override;
  Unary* Get(Ctx*, const Bytes*, Bytes*) override;
  Unary* List(Ctx*, const Bytes*, Bytes*) override;
  Unary* GetRuleset(Ctx*, const Bytes*, Bytes*) override;
  Unary* Status(Ctx*, const Bytes*, Bytes*) override;
  Unary* GetCounters(Ctx*, const Bytes*, Bytes*) override;
  Stream* StreamRuleset(Ctx*, const Bytes*) override;
  Stream* Watch(Ctx*, const Bytes*) override;
  Stream* Trace(Ctx*, const Bytes*) override;

 private:
  // Authorizes the caller of `ctx` for `access`, then runs `work` on
  // `thread`; `work` fills the reply and returns the call's status.
  Unary* RunUnary(Ctx* ctx, const char* method, Access access, TaskThread* thread,
                  std::function<absl::Status(const Scope&)> work);
  // The caller's scope for `access`; PERMISSION_DENIED (logged) otherwise.
  absl::StatusOr<Scope> Authorize(Ctx* ctx, const char* method, Access access) const;

  WriteEngine* const engine_;
  const PolicyHolder* const policy_;
  const bool insecure_tcp_;
  std::function<void(v1::StatusResponse*)> status_hook_;
  std::atomic<int> waiting_{0};
  std::atomic<int> ruleset_streams_{0};
  std::atomic<int> traces_{0};
  // Last, so that they finish their calls before the rest goes away.
  TaskThread reads_;
  TaskThread writes_;
};

}  // namespace nftproxy::server
