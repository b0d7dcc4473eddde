// The gRPC adapter: nftproxy.v1.Proxy on top of the WriteEngine. It only
// moves requests and replies between gRPC and the engine and turns
// absl::Status into grpc::Status (with the ErrorDetail in the status
// details); it makes no decisions.
#pragma once

#include "common/parallel.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"
#include "server/write_engine.h"

namespace nftproxy::server {

// Apply and Sync are served from their request bytes (see server/wire.h);
// the other methods through the generated types.
using ProxyServiceBase =
    v1::Proxy::WithRawCallbackMethod_Apply<v1::Proxy::WithRawCallbackMethod_Sync<v1::Proxy::Service>>;

class ProxyService final : public ProxyServiceBase {
 public:
  explicit ProxyService(WriteEngine* engine) : engine_(engine) {}

  grpc::ServerUnaryReactor* Apply(grpc::CallbackServerContext*, const grpc::ByteBuffer*, grpc::ByteBuffer*) override;
  grpc::ServerUnaryReactor* Sync(grpc::CallbackServerContext*, const grpc::ByteBuffer*, grpc::ByteBuffer*) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest*, v1::Resource*) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*, v1::ListResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest*, v1::DeleteResponse*) override;
  grpc::Status GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*, v1::GetRulesetResponse*) override;
  grpc::Status StreamRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*,
                             grpc::ServerWriter<v1::GetRulesetResponse>*) override;
  grpc::Status Watch(grpc::ServerContext*, const v1::WatchRequest*, grpc::ServerWriter<v1::WatchEvent>*) override;
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusResponse*) override;

 private:
  template <typename Response>
  grpc::ServerUnaryReactor* RunBytes(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                     grpc::ByteBuffer* resp,
                                     absl::Status (WriteEngine::*method)(absl::string_view, Response*));

  WriteEngine* const engine_;
  // Runs Apply and Sync calls (a commit can take seconds, too long for
  // gRPC's callback threads); last, so that it finishes them before the
  // rest of the service goes away.
  TaskThread calls_;
};

}  // namespace nftproxy::server
