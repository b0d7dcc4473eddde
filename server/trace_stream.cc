#include "server/trace_stream.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::server {

absl::StatusOr<TraceSpec> CheckTraceRequest(const v1::TraceRequest& req) {
  TraceSpec spec;
  absl::StatusOr<dp::IpAddr> from = dp::IpAddr::Parse(req.from());
  if (!from.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("from: \"", req.from(), "\" is not an IP address"));
  }
  absl::StatusOr<dp::IpAddr> to = dp::IpAddr::Parse(req.to());
  if (!to.ok()) return absl::InvalidArgumentError(absl::StrCat("to: \"", req.to(), "\" is not an IP address"));
  if (from->family != to->family) {
    return absl::InvalidArgumentError(
        absl::StrCat("to: ", req.to(), " is not of the address family of from (", req.from(), ")"));
  }
  spec.filter.src = *from;
  spec.filter.dst = *to;
  switch (req.protocol()) {
    case v1::PROTOCOL_UNSPECIFIED:
    case v1::TCP: spec.filter.proto = dp::L4Proto::kTcp; break;
    case v1::UDP: spec.filter.proto = dp::L4Proto::kUdp; break;
    case v1::SCTP: spec.filter.proto = dp::L4Proto::kSctp; break;
    default: return absl::InvalidArgumentError(absl::StrCat("protocol: unknown protocol ", req.protocol()));
  }
  if (req.port() < 1 || req.port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port: ", req.port(), " is out of range (1-65535)"));
  }
  spec.filter.port = static_cast<uint16_t>(req.port());
  if (req.has_duration()) {
    const absl::Duration d = absl::Seconds(req.duration().seconds()) + absl::Nanoseconds(req.duration().nanos());
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("duration: ", absl::FormatDuration(d), " is not positive"));
    }
    if (d > kMaxTraceDuration) {
      return absl::InvalidArgumentError(absl::StrCat("duration: ", absl::FormatDuration(d), " is longer than ",
                                                     absl::FormatDuration(kMaxTraceDuration)));
    }
    spec.duration = d;
  }
  if (req.count() > kMaxTraceCount) {
    return absl::InvalidArgumentError(absl::StrCat("count: ", req.count(), " is more than ", kMaxTraceCount));
  }
  if (req.count() > 0) spec.count = req.count();
  return spec;
}

v1::TraceEvent TraceEventOf(const dp::TraceStep& step) {
  v1::TraceEvent e;
  e.set_id(step.id);
  e.set_packet(step.packet);
  e.set_hook(step.hook);
  for (const std::string& w : step.path) e.add_path(w);
  e.set_service(step.service);
  e.set_service_port(step.service_port);
  e.set_endpoint(step.endpoint);
  e.set_endpoint_name(step.endpoint_name);
  e.set_ticket(step.ticket);
  e.set_verdict(step.verdict);
  e.set_decided_by(step.decided_by);
  e.set_text(step.Line());
  return e;
}

namespace {

class TraceStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  TraceStream(grpc::CallbackServerContext* ctx, WriteEngine* engine, TraceSpec spec, std::atomic<int>* traces)
      : ctx_(ctx), traces_(traces) {
    std::thread([this, engine, spec] {
      const absl::Status status = Run(engine, spec);
      Finish(ToGrpcStatus(status));  // the last use of `this` on this thread
    }).detach();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    failed_ = failed_ || !ok;
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    failed_ = true;
  }
  void OnDone() override {
    traces_->fetch_sub(1);
    delete this;
  }

 private:
  absl::Status Run(WriteEngine* engine, const TraceSpec& spec) {
    absl::StatusOr<dp::TraceNames> names = engine->NamesForTrace();
    if (!names.ok()) return names.status();
    const std::string table = names->table;
    // Listening before the rule exists: no event is missed.
    absl::StatusOr<std::unique_ptr<dp::TraceListener>> listener = dp::TraceListener::Open();
    if (!listener.ok()) return listener.status();
    const absl::Time deadline = absl::Now() + spec.duration;
    if (absl::Status s = engine->RunBetweenCommits([&] { return dp::InstallTraceTable(table, spec.filter); });
        !s.ok()) {
      engine->RunBetweenCommits([&] { return dp::RemoveTraceTable(table); }).IgnoreError();
      return s;
    }
    log::Info("trace started", {{"table", dp::TraceTableName(table)},
                                {"from", spec.filter.src.ToString()},
                                {"to", spec.filter.dst.ToString()},
                                {"port", absl::StrCat(spec.filter.port)},
                                {"duration", absl::FormatDuration(spec.duration)}});
    dp::TraceDecoder decoder(std::move(*names));
    absl::Status status;
    uint32_t sent = 0;
    bool lost = false, told_lost = false;
    while (status.ok() && sent < spec.count && absl::Now() < deadline && !Failed()) {
      const absl::Duration wait = std::min(absl::Milliseconds(100), deadline - absl::Now());
      for (const dp::TraceAttrs& a : (*listener)->Read(std::max(wait, absl::ZeroDuration()), &lost)) {
        std::optional<dp::TraceStep> step = decoder.Add(a);
        if (!step) continue;
        if (!Send(TraceEventOf(*step), deadline, &status)) break;
        if (++sent >= spec.count) break;
      }
      if (lost && !told_lost) {
        told_lost = true;
        log::Warning("trace events were lost (ENOBUFS)", {{"table", dp::TraceTableName(table)}});
      }
    }
    // However the trace ended: the flag is set no more.
    if (absl::Status s = engine->RunBetweenCommits([&] { return dp::RemoveTraceTable(table); }); !s.ok()) {
      log::Error("cannot remove the trace table",
                 {{"table", dp::TraceTableName(table)}, {"error", std::string(s.message())}});
      if (status.ok()) status = s;
    }
    log::Info("trace ended", {{"table", dp::TraceTableName(table)}, {"events", absl::StrCat(sent)}});
    if (absl::IsCancelled(status)) return absl::OkStatus();  // nobody to tell
    return status;
  }

  bool Failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }

  // Waits for the write until `deadline`; a client that reads nothing
  // meanwhile has its call cancelled (the trace must end on time).
  bool Send(const v1::TraceEvent& event, absl::Time deadline, absl::Status* status) {
    grpc::ByteBuffer next;
    bool own = false;
    if (absl::Status s = FromGrpcStatus(grpc::SerializationTraits<v1::TraceEvent>::Serialize(event, &next, &own));
        !s.ok()) {
      *status = s;
      return false;
    }
    buffer_.Swap(&next);
    {
      absl::MutexLock lock(&mu_);
      if (failed_) {
        *status = absl::CancelledError("the client went away");
        return false;
      }
      writing_ = true;
    }
    StartWrite(&buffer_);
    absl::MutexLock lock(&mu_);
    auto written = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&written), deadline)) {
      ctx_->TryCancel();
      failed_ = true;
      mu_.Await(absl::Condition(&written));
    }
    if (failed_) *status = absl::CancelledError("the client went away");
    return !failed_;
  }

  grpc::CallbackServerContext* const ctx_;
  std::atomic<int>* const traces_;
  grpc::ByteBuffer buffer_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewTraceReactor(grpc::CallbackServerContext* ctx, WriteEngine* engine,
                                                             TraceSpec spec, std::atomic<int>* traces) {
  return new TraceStream(ctx, engine, std::move(spec), traces);
}

}  // namespace nftproxy::server
