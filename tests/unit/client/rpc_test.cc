// A refused call is placed in the user's manifests by the resource its
// ErrorDetail names, as it arrives over gRPC, not by its message's text.
#include "client/rpc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

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
  // A plain socket path is a unix socket, not a DNS name.
  EXPECT_EQ(ChannelTarget("/run/nftproxy/nftproxy.sock"), "unix:/run/nftproxy/nftproxy.sock");
  EXPECT_EQ(ChannelTarget("[::1]:7070"), "[::1]:7070");
}

TEST(Rpc, RequestTimeout) {
  EXPECT_EQ(*ParseRequestTimeout("0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseRequestTimeout("7"), absl::Seconds(7));
  EXPECT_EQ(*ParseRequestTimeout("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseRequestTimeout("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseRequestTimeout("0s"), absl::ZeroDuration());
  for (const char* bad : {"", "soon", "-1s", "-3", "5 s", "inf"}) {
    absl::StatusOr<absl::Duration> d = ParseRequestTimeout(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) EXPECT_NE(d.status().message().find("--request-timeout"), absl::string_view::npos);
  }
}

// A server that lists `total` services in pages of `page` and returns a
// ruleset of `ruleset_bytes`, on a unix socket of its own.
class FakeProxy : public v1::Proxy::Service {
 public:
  FakeProxy(int total, int page, size_t ruleset_bytes) : total_(total), page_(page), ruleset_bytes_(ruleset_bytes) {}
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* req, v1::ListResponse* resp) override {
    ++calls_;
    int start = req->page_token().empty() ? 0 : std::stoi(req->page_token());
    for (int i = start; i < total_ && i < start + page_; ++i) {
      *resp->add_resources() = ResourceOf(Key{v1::SERVICE, "default", absl::StrCat("s", i)});
    }
    if (start + page_ < total_) resp->set_next_page_token(std::to_string(start + page_));
    return grpc::Status::OK;
  }
  grpc::Status GetRuleset(grpc::ServerContext*, const v1::GetRulesetRequest*, v1::GetRulesetResponse* resp) override {
    resp->set_text(std::string(ruleset_bytes_, 'x'));
    return grpc::Status::OK;
  }
  int calls_ = 0;

 private:
  const int total_, page_;
  const size_t ruleset_bytes_;
};

struct FakeServer {
  explicit FakeServer(FakeProxy* svc) : path(absl::StrCat(testing::TempDir(), "/fake-", getpid(), ".sock")) {
    grpc::ServerBuilder b;
    b.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
    b.SetMaxSendMessageSize(kMaxMessageBytes);
    b.RegisterService(svc);
    server = b.BuildAndStart();
  }
  ~FakeServer() {
    server->Shutdown();
    unlink(path.c_str());
  }
  std::string path;
  std::unique_ptr<grpc::Server> server;
};

TEST(Rpc, ListPagesFollowsTheToken) {
  FakeProxy svc(1200, 500, 0);
  FakeServer server(&svc);
  ASSERT_NE(server.server, nullptr);
  auto channel = NewChannel(*ParseAddress(server.path));  // a plain socket path
  auto stub = v1::Proxy::NewStub(channel);
  ASSERT_TRUE(WaitConnected(channel.get(), stub.get(), absl::Seconds(5)).ok());
  std::vector<int> sizes;
  std::vector<std::string> names;
  absl::Status s = ListPages(stub.get(), v1::ListRequest(), absl::Seconds(5), [&](const v1::ListResponse& page) {
    sizes.push_back(page.resources_size());
    for (const v1::Resource& r : page.resources()) names.push_back(MetaOf(r).name());
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sizes, (std::vector<int>{500, 500, 200}));
  ASSERT_EQ(names.size(), 1200u);
  EXPECT_EQ(names.back(), "s1199");
  // An error from the page callback stops the listing.
  svc.calls_ = 0;
  s = ListPages(stub.get(), v1::ListRequest(), absl::Seconds(5),
                [&](const v1::ListResponse&) { return absl::CancelledError("enough"); });
  EXPECT_TRUE(absl::IsCancelled(s));
  EXPECT_EQ(svc.calls_, 1);
}

TEST(Rpc, RepliesLargerThanGrpcsDefaultLimit) {
  FakeProxy svc(0, 1, 40 << 20);  // 40 MiB: ten times gRPC's default 4 MiB
  FakeServer server(&svc);
  auto channel = NewChannel(*ParseAddress("unix://" + server.path));
  auto stub = v1::Proxy::NewStub(channel);
  v1::GetRulesetResponse resp;
  absl::Status s = Call(stub.get(), &v1::Proxy::Stub::GetRuleset, v1::GetRulesetRequest(), &resp, absl::Seconds(20));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(resp.text().size(), size_t{40} << 20);
}

TEST(Rpc, ConnectingToNobodyFailsAtOnce) {
  const std::string nobody = absl::StrCat(testing::TempDir(), "/nobody-", getpid(), ".sock");
  auto channel = NewChannel(*ParseAddress(nobody));
  auto stub = v1::Proxy::NewStub(channel);
  const absl::Time start = absl::Now();
  absl::Status s = WaitConnected(channel.get(), stub.get(), absl::Seconds(10));
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(ExitCodeFor(s.code()), kExitUnreachable);
}

}  // namespace
}  // namespace nftproxy::client
