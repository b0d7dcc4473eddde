#include "server/grpc_service.h"

#include "common/grpc_status.h"

namespace nftproxy::server {

namespace {

std::string Flatten(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  out.reserve(b.Length());
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

}  // namespace

// The request and reply buffers live until Finish.
template <typename Response>
grpc::ServerUnaryReactor* ProxyService::RunBytes(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                                 grpc::ByteBuffer* resp,
                                                 absl::Status (WriteEngine::*method)(absl::string_view, Response*)) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  calls_.Post([this, reactor, req, resp, method] {
    Response out;
    absl::Status s = (engine_->*method)(Flatten(*req), &out);
    if (s.ok()) {
      bool own_buffer = false;
      reactor->Finish(grpc::SerializationTraits<Response>::Serialize(out, resp, &own_buffer));
      return;
    }
    reactor->Finish(ToGrpcStatus(s));
  });
  return reactor;
}

grpc::ServerUnaryReactor* ProxyService::Apply(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                              grpc::ByteBuffer* resp) {
  return RunBytes<v1::ApplyResponse>(ctx, req, resp, &WriteEngine::Apply);
}

grpc::ServerUnaryReactor* ProxyService::Sync(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                             grpc::ByteBuffer* resp) {
  return RunBytes<v1::SyncResponse>(ctx, req, resp, &WriteEngine::Sync);
}

grpc::Status ProxyService::Get(grpc::ServerContext*, const v1::GetRequest* req, v1::Resource* resp) {
  absl::StatusOr<v1::Resource> r = engine_->Get(req->ref());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ProxyService::List(grpc::ServerContext*, const v1::ListRequest* req, v1::ListResponse* resp) {
  absl::StatusOr<v1::ListResponse> page = engine_->List(*req);
  if (!page.ok()) return ToGrpcStatus(page.status());
  *resp = std::move(*page);
  return grpc::Status::OK;
}

grpc::Status ProxyService::Delete(grpc::ServerContext*, const v1::DeleteRequest* req, v1::DeleteResponse* resp) {
  return ToGrpcStatus(engine_->Delete(*req, resp));
}

grpc::Status ProxyService::GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest* req,
                                      v1::GetRulesetResponse* resp) {
  *resp = engine_->Ruleset(*req);
  return grpc::Status::OK;
}

grpc::Status ProxyService::StreamRuleset(grpc::ServerContext* ctx, const v1::GetRulesetRequest* req,
                                         grpc::ServerWriter<v1::GetRulesetResponse>* writer) {
  if (!req->service().empty()) {  // one service's part is small: one piece
    writer->Write(engine_->Ruleset(*req));
    return grpc::Status::OK;
  }
  engine_->StreamRuleset(
      [ctx, writer](const v1::GetRulesetResponse& piece) { return !ctx->IsCancelled() && writer->Write(piece); });
  return ctx->IsCancelled() ? grpc::Status(grpc::StatusCode::CANCELLED, "the client went away") : grpc::Status::OK;
}

grpc::Status ProxyService::Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                                 grpc::ServerWriter<v1::WatchEvent>* writer) {
  return ToGrpcStatus(engine_->Watch(*req, [ctx] { return ctx->IsCancelled(); },
                                     [writer](const v1::WatchEvent& e) { return writer->Write(e); }));
}

grpc::Status ProxyService::Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusResponse* resp) {
  *resp = engine_->Status();
  return grpc::Status::OK;
}

}  // namespace nftproxy::server
