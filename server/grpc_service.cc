#include "server/grpc_service.h"


#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/resource.h"
#include "server/thread_fed_stream.h"
#include "server/trace_stream.h"
#include "server/watch_stream.h"

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

// The request, parsed; InvalidArgument naming its type when it is not one.
template <typename M>
absl::Status Parse(const grpc::ByteBuffer& b, M* m) {
  if (!m->ParseFromString(Flatten(b))) {
    return absl::InvalidArgumentError(
        absl::StrCat(M::descriptor()->name(), ": the request is not a valid ", M::descriptor()->full_name(), " message"));
  }
  return absl::OkStatus();
}

template <typename M>
absl::Status Serialize(const M& m, grpc::ByteBuffer* out) {
  bool own_buffer = false;
  return FromGrpcStatus(grpc::SerializationTraits<M>::Serialize(m, out, &own_buffer));
}

// A stream refused before it started.
class RefusedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

// StreamRuleset: the engine renders the ruleset piece by piece on a thread
// of its own, which waits for each piece to be written (the client's flow
// control paces it) and finishes the call last.
class RulesetStream final : public ThreadFedStream {
 public:
  RulesetStream(grpc::CallbackServerContext* ctx, const WriteEngine* engine, v1::GetRulesetRequest req,
                std::atomic<int>* streams)
      : ThreadFedStream(ctx, streams) {
    Start([this, engine, req = std::move(req)] {
      absl::Status status;
      if (!req.service().empty()) {  // one service's part is small: one piece
        absl::StatusOr<v1::GetRulesetResponse> one = engine->Ruleset(req);
        if (!one.ok()) return one.status();
        Write(*one, &status);
        return status;
      }
      absl::Status s = engine->StreamRuleset(
          req.kernel(), [&](const v1::GetRulesetResponse& piece) { return Write(piece, &status); });
      return status.ok() ? s : status;
    });
  }
};

}  // namespace

absl::StatusOr<Scope> ProxyService::Authorize(Ctx* ctx, const char* method, Access access) const {
  const Caller caller = CallerOf(*ctx, insecure_tcp_);
  absl::StatusOr<Scope> scope = policy_->Get()->Authorize(caller, access);
  if (!scope.ok()) {
    log::Warning("call denied", {{"method", method}, {"caller", caller.Describe()},
                                 {"error", std::string(scope.status().message())}});
  }
  return scope;
}

ProxyService::Unary* ProxyService::RunUnary(Ctx* ctx, const char* method, Access access, TaskThread* thread,
                                            std::function<absl::Status(const Scope&)> work) {
  Unary* reactor = ctx->DefaultReactor();
  absl::StatusOr<Scope> scope = Authorize(ctx, method, access);
  if (!scope.ok()) {
    reactor->Finish(ToGrpcStatus(scope.status()));
    return reactor;
  }
  if (waiting_.fetch_add(1) >= kMaxWaitingCalls) {
    waiting_.fetch_sub(1);
    reactor->Finish(ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat("the server has ", kMaxWaitingCalls, " calls waiting; retry later"))));
    return reactor;
  }
  thread->Post([this, reactor, work = std::move(work), scope = std::move(*scope)] {
    waiting_.fetch_sub(1);
    reactor->Finish(ToGrpcStatus(work(scope)));
  });
  return reactor;
}

// The request and reply buffers live until Finish.
ProxyService::Unary* ProxyService::Apply(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "Apply", Access::kWrite, &writes_, [this, req, resp](const Scope& scope) {
    v1::ApplyResponse out;
    absl::Status s = engine_->Apply(Flatten(*req), &out, &scope);
    return s.ok() ? Serialize(out, resp) : s;
  });
}

ProxyService::Unary* ProxyService::Sync(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "Sync", Access::kWrite, &writes_, [this, req, resp](const Scope& scope) {
    v1::SyncResponse out;
    absl::Status s = engine_->Sync(Flatten(*req), &out, &scope);
    return s.ok() ? Serialize(out, resp) : s;
  });
}

ProxyService::Unary* ProxyService::Delete(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "Delete", Access::kWrite, &writes_, [this, req, resp](const Scope& scope) {
    v1::DeleteRequest in;
    v1::DeleteResponse out;
    absl::Status s = Parse(*req, &in);
    if (s.ok()) s = engine_->Delete(in, &out, &scope);
    return s.ok() ? Serialize(out, resp) : s;
  });
}

ProxyService::Unary* ProxyService::Get(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "Get", Access::kRead, &reads_, [this, req, resp](const Scope& scope) {
    v1::GetRequest in;
    if (absl::Status s = Parse(*req, &in); !s.ok()) return s;
    if (absl::Status s = scope.CheckRead(KeyOf(in.ref()).ns); !s.ok()) return s;
    absl::StatusOr<v1::Resource> r = engine_->Get(in.ref());
    return r.ok() ? Serialize(*r, resp) : r.status();
  });
}

ProxyService::Unary* ProxyService::List(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "List", Access::kRead, &reads_, [this, req, resp](const Scope& scope) {
    v1::ListRequest in;
    if (absl::Status s = Parse(*req, &in); !s.ok()) return s;
    if (absl::Status s = scope.CheckRead(in.namespace_()); !s.ok()) return s;
    absl::StatusOr<v1::ListResponse> page = engine_->List(in);
    return page.ok() ? Serialize(*page, resp) : page.status();
  });
}

ProxyService::Unary* ProxyService::GetRuleset(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "GetRuleset", Access::kRead, &reads_, [this, req, resp](const Scope& scope) {
    v1::GetRulesetRequest in;
    if (absl::Status s = Parse(*req, &in); !s.ok()) return s;
    // The whole ruleset shows every namespace's services.
    const std::string ns = in.service().empty() ? "" : in.namespace_().empty() ? kDefaultNamespace : in.namespace_();
    if (absl::Status s = scope.CheckRead(ns); !s.ok()) return s;
    absl::StatusOr<v1::GetRulesetResponse> out = engine_->Ruleset(in);
    return out.ok() ? Serialize(*out, resp) : out.status();
  });
}

ProxyService::Unary* ProxyService::GetCounters(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "GetCounters", Access::kRead, &reads_, [this, req, resp](const Scope& scope) {
    v1::GetCountersRequest in;
    if (absl::Status s = Parse(*req, &in); !s.ok()) return s;
    std::string ns = in.namespace_();
    if (!in.service().empty() && ns.empty()) ns = kDefaultNamespace;
    // One namespace: the caller must read it; all of them: only those it may.
    if (!ns.empty()) {
      if (absl::Status s = scope.CheckRead(ns); !s.ok()) return s;
    }
    absl::StatusOr<v1::GetCountersResponse> out =
        engine_->Counters([&](const std::string& port_ns, const std::string& service) {
          if (!ns.empty()) return port_ns == ns && (in.service().empty() || service == in.service());
          return scope.CheckRead(port_ns).ok();
        });
    return out.ok() ? Serialize(*out, resp) : out.status();
  });
}

ProxyService::Unary* ProxyService::Status(Ctx* ctx, const Bytes* req, Bytes* resp) {
  return RunUnary(ctx, "Status", Access::kRead, &reads_, [this, req, resp](const Scope&) {
    v1::StatusRequest in;
    if (absl::Status s = Parse(*req, &in); !s.ok()) return s;
    v1::StatusResponse status = engine_->Status();
    if (status_hook_) status_hook_(&status);
    return Serialize(status, resp);
  });
}

ProxyService::Stream* ProxyService::StreamRuleset(Ctx* ctx, const Bytes* req) {
  absl::StatusOr<Scope> scope = Authorize(ctx, "StreamRuleset", Access::kRead);
  if (!scope.ok()) return new RefusedStream(scope.status());
  v1::GetRulesetRequest in;
  if (absl::Status s = Parse(*req, &in); !s.ok()) return new RefusedStream(s);
  const std::string ns = in.service().empty() ? "" : in.namespace_().empty() ? kDefaultNamespace : in.namespace_();
  if (absl::Status s = scope->CheckRead(ns); !s.ok()) return new RefusedStream(s);
  if (ruleset_streams_.fetch_add(1) >= kMaxRulesetStreams) {
    ruleset_streams_.fetch_sub(1);
    return new RefusedStream(absl::ResourceExhaustedError(
        absl::StrCat("the server is already streaming the ruleset to ", kMaxRulesetStreams, " callers; retry later")));
  }
  return new RulesetStream(ctx, engine_, std::move(in), &ruleset_streams_);
}

ProxyService::Stream* ProxyService::Watch(Ctx* ctx, const Bytes* req) {
  absl::StatusOr<Scope> scope = Authorize(ctx, "Watch", Access::kRead);
  if (!scope.ok()) return new RefusedStream(scope.status());
  v1::WatchRequest in;
  if (absl::Status s = Parse(*req, &in); !s.ok()) return new RefusedStream(s);
  if (absl::Status s = scope->CheckRead(in.namespace_()); !s.ok()) return new RefusedStream(s);
  return NewWatchReactor(ctx, engine_, std::move(in));
}

// Trace changes the kernel's tables (a rule of its own): write access.
ProxyService::Stream* ProxyService::Trace(Ctx* ctx, const Bytes* req) {
  absl::StatusOr<Scope> scope = Authorize(ctx, "Trace", Access::kWrite);
  if (!scope.ok()) return new RefusedStream(scope.status());
  // A trace shows every namespace's names and sets a rule outside any
  // namespace: a write grant limited to some sources or namespaces is not
  // enough.
  if (!scope->Unrestricted()) {
    return new RefusedStream(absl::PermissionDeniedError(
        absl::StrCat(scope->who, " may write only some sources or namespaces; a trace needs unrestricted write")));
  }
  v1::TraceRequest in;
  if (absl::Status s = Parse(*req, &in); !s.ok()) return new RefusedStream(s);
  absl::StatusOr<TraceSpec> spec = CheckTraceRequest(in);
  if (!spec.ok()) return new RefusedStream(spec.status());
  if (traces_.fetch_add(1) >= kMaxTraces) {
    traces_.fetch_sub(1);
    return new RefusedStream(absl::ResourceExhaustedError(
        absl::StrCat("a trace is already running (at most ", kMaxTraces, " at a time); retry later")));
  }
  return NewTraceReactor(ctx, engine_, std::move(*spec), &traces_);
}

}  // namespace nftproxy::server
