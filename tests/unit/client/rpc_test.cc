// A refused call is placed in the user's manifests by the resource its
// ErrorDetail names, as it arrives over gRPC, not by its message's text.
#include "client/rpc.h"

#include <gtest/gtest.h>

#include "client/cli.h"
#include "common/errors.h"
#include "common/grpc_status.h"

namespace nftproxy::client {
namespace {

ManifestDoc Doc(const std::string& file, int index, v1::Kind kind, const std::string& ns, const std::string& name) {
  ManifestDoc d;
  d.file = file;
  d.index = index;
  d.resource = ResourceOf(Key{kind, ns, name});
  if (ns.empty()) MutableMetaOf(&d.resource)->clear_namespace_();
  return d;
}

// What the client gets when the server refuses with `s`.
absl::Status OverTheWire(const absl::Status& s) { return FromGrpcStatus(ToGrpcStatus(s)); }

TEST(Locate, NamesTheDocumentOfTheResourceInTheDetail) {
  // Each name is a prefix of the next: only the key tells them apart.
  const std::vector<ManifestDoc> docs = {Doc("a.yaml", 1, v1::SERVICE, "default", "web"),
                                         Doc("a.yaml", 2, v1::SERVICE, "default", "web-2"),
                                         Doc("b.yaml", 1, v1::SERVICE, "default", "web-2-b")};
  const absl::Status web2 = OverTheWire(
      ResourceError(absl::StatusCode::kInvalidArgument, Key{v1::SERVICE, "default", "web-2"}, "spec.ports[0].port",
                    "70000 is not a port"));
  EXPECT_EQ(Locate(web2, docs), "a.yaml: document 2: service default/web-2: spec.ports[0].port: 70000 is not a port");
  const absl::Status web = OverTheWire(
      ResourceError(absl::StatusCode::kFailedPrecondition, Key{v1::SERVICE, "default", "web"}, "", "owned by x"));
  EXPECT_EQ(Locate(web, docs), "a.yaml: document 1: service default/web: owned by x");
  const absl::Status web2b = OverTheWire(
      ResourceError(absl::StatusCode::kInvalidArgument, Key{v1::SERVICE, "default", "web-2-b"}, "", "bad"));
  EXPECT_EQ(Locate(web2b, docs), "b.yaml: document 1: service default/web-2-b: bad");
}

TEST(Locate, KindAndDefaultedNamespaceArePartOfTheKey) {
  const std::vector<ManifestDoc> docs = {Doc("a.yaml", 1, v1::SERVICE, "", "web"),
                                         Doc("a.yaml", 2, v1::ENDPOINT_SLICE, "", "web")};
  const absl::Status slice =
      OverTheWire(ResourceError(absl::StatusCode::kInvalidArgument, Key{v1::ENDPOINT_SLICE, "default", "web"},
                                "endpoints[0].addresses[0]", "not an address"));
  EXPECT_EQ(Locate(slice, docs),
            "a.yaml: document 2: endpointslice default/web: endpoints[0].addresses[0]: not an address");
  const absl::Status other_ns = OverTheWire(
      ResourceError(absl::StatusCode::kInvalidArgument, Key{v1::SERVICE, "shop", "web"}, "", "bad"));
  EXPECT_EQ(Locate(other_ns, docs), "service shop/web: bad");
}

TEST(Locate, NoDetailMeansTheMessageAsItIs) {
  const std::vector<ManifestDoc> docs = {Doc("a.yaml", 1, v1::SERVICE, "default", "web")};
  // Looks like the resource, but only the detail counts.
  const absl::Status text_only = OverTheWire(absl::InvalidArgumentError("service default/web: spec: bad"));
  EXPECT_EQ(Locate(text_only, docs), "service default/web: spec: bad");
  const absl::Status kernel = OverTheWire(absl::InternalError("service default/web (chain x): kernel refused"));
  EXPECT_EQ(Locate(kernel, docs), "service default/web (chain x): kernel refused");
  // A detail naming a resource that is in no document.
  const absl::Status elsewhere =
      OverTheWire(ResourceError(absl::StatusCode::kAborted, Key{v1::WORKLOAD, "default", "web"}, "", "conflict"));
  EXPECT_EQ(Locate(elsewhere, docs), "workload default/web: conflict");
  EXPECT_EQ(Locate(elsewhere, {}), "workload default/web: conflict");
}

TEST(Rpc, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnavailable), kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kDeadlineExceeded), kExitUnreachable);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInvalidArgument), kExitBadInput);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kFailedPrecondition), kExitRefused);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kAborted), kExitRefused);
}

TEST(Rpc, ChannelTarget) {
  EXPECT_EQ(ChannelTarget("unix:///run/nftproxy/nftproxy.sock"), "unix:/run/nftproxy/nftproxy.sock");
  EXPECT_EQ(ChannelTarget("tcp://127.0.0.1:7070"), "127.0.0.1:7070");
  EXPECT_EQ(ChannelTarget("dns:///proxy:7070"), "dns:///proxy:7070");
}

}  // namespace
}  // namespace nftproxy::client
