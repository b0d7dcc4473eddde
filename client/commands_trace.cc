// `nftproxy trace`: one server-streaming call, one line per event.
#include <chrono>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/output.h"
#include "common/grpc_status.h"

namespace nftproxy::client {

int Client::Trace(const Options& o) {
  if (!o.positional.empty()) return Usage("trace", "takes no arguments; name the flow with --from, --to and --port");
  if (o.trace_from.empty()) return Usage("trace", "--from: the source address is required");
  if (o.trace_to.empty()) return Usage("trace", "--to: the destination address is required");
  if (o.trace_port.empty()) return Usage("trace", "--port: the destination port is required");
  v1::TraceRequest req;
  req.set_from(o.trace_from);
  req.set_to(o.trace_to);
  const std::string proto = absl::AsciiStrToLower(o.trace_proto.empty() ? "tcp" : o.trace_proto);
  if (proto == "tcp") {
    req.set_protocol(v1::TCP);
  } else if (proto == "udp") {
    req.set_protocol(v1::UDP);
  } else if (proto == "sctp") {
    req.set_protocol(v1::SCTP);
  } else {
    return Usage("trace", "--proto: expected tcp, udp or sctp, not " + o.trace_proto);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(o.trace_port, &port)) return Usage("trace", "--port: expected a number, not " + o.trace_port);
  req.set_port(port);  // the server checks the range
  absl::Duration duration = absl::Seconds(10);
  if (!o.trace_duration.empty()) {
    if (!absl::ParseDuration(o.trace_duration, &duration)) {
      return Usage("trace", "--duration: expected a duration such as 10s or 1m, not " + o.trace_duration);
    }
    const int64_t ns = absl::ToInt64Nanoseconds(duration);
    req.mutable_duration()->set_seconds(ns / 1000000000);
    req.mutable_duration()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  if (!o.trace_count.empty()) {
    uint32_t count = 0;
    if (!absl::SimpleAtoi(o.trace_count, &count)) {
      return Usage("trace", "--count: expected a number, not " + o.trace_count);
    }
    req.set_count(count);
  }
  if (int rc = Connect(); rc != kExitOk) return rc;
  grpc::ClientContext ctx;
  // The server ends the trace on time; this only bounds a server that does not.
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(duration) + std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientReader<v1::TraceEvent>> reader = stub_->Trace(&ctx, req);
  v1::TraceEvent e;
  while (reader->Read(&e)) {
    if (o.output == "json") {
      std::cout << MessageJson(e, true);
    } else {
      std::cout << e.text() << "\n";
    }
    std::cout << std::flush;
  }
  absl::Status s = FromGrpcStatus(reader->Finish());
  if (!s.ok()) return Report(s);
  return kExitOk;
}

}  // namespace nftproxy::client
