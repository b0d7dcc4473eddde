// Talking to the server: the channel a --server address names, one deadline
// per call, and what a failed call prints and exits with. A refusal is
// placed in the user's manifests by the resource its ErrorDetail names
// (common/errors.h), never by reading the message.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/manifest.h"
#include "common/grpc_status.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::client {

// A write of tens of thousands of resources takes seconds; anything that
// takes minutes is a server that is stuck.
inline constexpr std::chrono::seconds kCallTimeout{120};

// gRPC's target for "unix:///path" or "tcp://host:port" (anything else is
// passed as it is).
std::string ChannelTarget(const std::string& server);
std::unique_ptr<v1::Proxy::Stub> Connect(const std::string& server);

// One unary call with a deadline. The status keeps the server's ErrorDetail.
template <typename Req, typename Resp>
absl::Status Call(v1::Proxy::Stub* stub,
                  grpc::Status (v1::Proxy::Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
                  Resp* resp, std::chrono::seconds timeout = kCallTimeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  return FromGrpcStatus((stub->*method)(&ctx, req, resp));
}

// kExitUnreachable, kExitBadInput or kExitRefused (cli.h).
int ExitCodeFor(absl::StatusCode code);

// The message of a failed call, with "FILE: document N: " in front when its
// ErrorDetail names a resource that one of `docs` holds (the first such
// document); the message alone otherwise.
std::string Locate(const absl::Status& s, const std::vector<ManifestDoc>& docs);

// Prints a failed call's error (located in `docs`) and returns its exit code.
int Report(const absl::Status& s, const std::string& server, const std::vector<ManifestDoc>& docs = {});

}  // namespace nftproxy::client
