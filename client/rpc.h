// Talking to the server: the channel a --server address names, the deadline
// --request-timeout gives each call, List followed page by page, and what a
// failed call prints and exits with. A refusal is placed in the user's
// manifests by the resource its ErrorDetail names (common/errors.h), never
// by reading the message.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/grpc_status.h"
#include "manifest/manifest.h"
#include "nftproxy/v1/nftproxy.grpc.pb.h"

namespace nftproxy::client {

// The manifest readers (manifest/, shared with the server) as the CLI names them.
using manifest::DescribeResource;
using manifest::DocumentPlace;
using manifest::ForEachManifest;
using manifest::LoadManifests;
using manifest::ManifestDoc;
using manifest::ManifestOptions;
using manifest::ParseManifests;

// Without --request-timeout: a write of tens of thousands of resources takes
// seconds, anything that takes minutes is a server that is stuck; a
// connection that is not up in 20 s (gRPC's own connect timeout) is not
// coming.
inline constexpr std::chrono::seconds kCallTimeout{120};
inline constexpr std::chrono::seconds kConnectTimeout{20};
// The server sends replies of up to 512 MiB (serve.cc); gRPC's client
// default of 4 MiB would refuse a large dry run's reply or ruleset.
inline constexpr int kMaxMessageBytes = 512 << 20;

// --request-timeout: kubectl's spelling, "0" (no deadline), a number of
// seconds ("7"), or a duration ("250ms", "5s", "1m30s").
absl::StatusOr<absl::Duration> ParseRequestTimeout(absl::string_view text);

// gRPC's target for what --server names (common/address.h); text that is no
// nftproxy address is passed as it is.
std::string ChannelTarget(const std::string& server);
// A plaintext channel (unix sockets, --insecure-listen loopback servers).
std::shared_ptr<grpc::Channel> NewChannel(const Address& address);

// TLS to a tcp:// server: --tls-ca (the CAs that sign the server's
// certificate; empty: the system's), --tls-cert and --tls-key (a client
// certificate, for mutual TLS), --tls-server-name (the name the server's
// certificate must carry, when it is not the host of --server). Each
// defaults to an environment variable: NFTPROXY_TLS_CA, NFTPROXY_TLS_CERT,
// NFTPROXY_TLS_KEY, NFTPROXY_TLS_SERVER_NAME.
struct TlsOptions {
  std::string ca, cert, key, server_name;
  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty() || !server_name.empty(); }
  // Fills what the flags left empty from the environment.
  void FromEnvironment();
};
// The channel to `address`: TLS when `tls` is enabled. InvalidArgument naming
// the flag when a file cannot be read or TLS is asked of a unix socket.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const Address& address, const TlsOptions& tls);

// Waits until `channel` is connected: OK, Unavailable as soon as a connection
// attempt fails (with gRPC's reason), DeadlineExceeded when `timeout` (zero:
// none) passes first.
absl::Status WaitConnected(grpc::Channel* channel, v1::Proxy::Stub* stub, absl::Duration timeout);

// `timeout` as a call's deadline; zero means none.
void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout);

// One unary call with a deadline. The status keeps the server's ErrorDetail.
template <typename Req, typename Resp>
absl::Status Call(v1::Proxy::Stub* stub,
                  grpc::Status (v1::Proxy::Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
                  Resp* resp, absl::Duration timeout) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout);
  return FromGrpcStatus((stub->*method)(&ctx, req, resp));
}

// Every page of `req` (each with `timeout`), handed to `page` as it arrives,
// so that a listing of any size holds one page at a time. Stops at the first
// error, the server's or `page`'s.
absl::Status ListPages(v1::Proxy::Stub* stub, v1::ListRequest req, absl::Duration timeout,
                       const std::function<absl::Status(const v1::ListResponse&)>& page);

// kExitUnreachable, kExitBadInput or kExitRefused (cli.h).
int ExitCodeFor(absl::StatusCode code);

// The message of a failed call, with "FILE: document N: " in front when its
// ErrorDetail names a resource that one of `docs` holds (the first such
// document); the message alone otherwise.
std::string Locate(const absl::Status& s, const std::vector<ManifestDoc>& docs);

// Prints a failed call's error (located in `docs`) and returns its exit code.
int Report(const absl::Status& s, const std::string& server, const std::vector<ManifestDoc>& docs = {});

}  // namespace nftproxy::client
