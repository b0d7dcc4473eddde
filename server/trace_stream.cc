#include "server/trace_stream.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"
#include "server/thread_fed_stream.h"

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

class TraceStream final : public ThreadFedStream {
 public:
  TraceStream(grpc::CallbackServerContext* ctx, WriteEngine* engine, TraceSpec spec, std::atomic<int>* traces)
      : ThreadFedStream(ctx, traces) {
    Start([this, engine, spec] { return Run(engine, spec); });
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
        if (!Write(TraceEventOf(*step), &status, deadline)) break;
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
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewTraceReactor(grpc::CallbackServerContext* ctx, WriteEngine* engine,
                                                             TraceSpec spec, std::atomic<int>* traces) {
  return new TraceStream(ctx, engine, std::move(spec), traces);
}

}  // namespace nftproxy::server
