// The server core against a fake dataplane: all-or-nothing writes, endpoint
// resolution, versions.
#include "server/proxy_service.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "dataplane/ruleset.h"

namespace nftproxy::server {
namespace {

class FakeDataplane : public dp::Dataplane {
 public:
  absl::Status Apply(const dp::Model& model, dp::ApplyResult* r) override {
    ++applies;
    if (!fail.ok()) return fail;
    last = model;
    committed = true;
    return absl::OkStatus();
  }
  std::string Render(const dp::Model& m) const override { return dp::Render(dp::Compile(m, "t")); }
  std::string Installed() const override { return committed ? Render(last) : ""; }
  std::string Table() const override { return "inet t"; }

  int applies = 0;
  bool committed = false;
  absl::Status fail;
  dp::Model last;
};

v1::ApplyRequest Req(const std::string& text) {
  v1::ApplyRequest r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

const char kWeb[] = R"(
upserts { service { metadata { name: "web" } spec { cluster_ips: "198.19.0.10"
  ports { name: "http" port: 80 target_port_name: "http" } ports { name: "admin" port: 81 target_port: 9090 } } } }
upserts { endpoint_slice { metadata { name: "web-1" } service_name: "web"
  ports { name: "http" port: 8080 }
  endpoints { addresses: "198.18.10.2" }
  endpoints { addresses: "198.18.11.2" conditions { ready: false } }
  endpoints { addresses: "198.18.12.2" weight: 3 } } }
)";

TEST(ProxyService, ResolvesEndpointsAndPorts) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &resp).ok());
  ASSERT_EQ(fake.last.services.size(), 1u);
  const dp::Service& s = fake.last.services[0];
  ASSERT_EQ(s.ports.size(), 2u);
  ASSERT_EQ(s.ports[0].backends.size(), 2u);  // the not-ready one is left out
  EXPECT_EQ(s.ports[0].backends[0].addr.ToString(), "198.18.10.2");
  EXPECT_EQ(s.ports[0].backends[0].port, 8080);
  EXPECT_EQ(s.ports[0].backends[1].weight, 3u);
  EXPECT_EQ(s.ports[1].backends[0].port, 9090);
  EXPECT_EQ(resp.outcomes(0), "created");
  EXPECT_EQ(resp.revision(), 1u);
}

TEST(ProxyService, InvalidBatchChangesNothing) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  // A good service together with a bad one: neither lands.
  absl::Status s = svc.DoApply(Req(R"(
    upserts { service { metadata { name: "ok" } spec { cluster_ips: "198.19.0.11" ports { port: 80 } } } }
    upserts { service { metadata { name: "bad" } spec { cluster_ips: "198.19.0.12" ports { port: 70000 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.applies, applies);
  v1::ListResponse list;
  v1::ListRequest all;
  ASSERT_TRUE(svc.List(nullptr, &all, &list).ok());
  EXPECT_EQ(list.resources_size(), 2);
}

TEST(ProxyService, KernelFailureChangesNothing) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &resp).ok());
  fake.fail = absl::FailedPreconditionError("service default/x: kernel refused the change");
  absl::Status s = svc.DoApply(Req(R"(upserts { service { metadata { name: "x" } spec { cluster_ips: "198.19.0.11" ports { port: 80 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::SERVICE);
  get.mutable_ref()->set_name("x");
  v1::Resource r;
  EXPECT_EQ(svc.Get(nullptr, &get, &r).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(ProxyService, UnchangedReapplyDoesNoKernelWork) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &resp).ok());
  const int applies = fake.applies;
  v1::ApplyResponse again;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &again).ok());
  EXPECT_EQ(fake.applies, applies);
  EXPECT_EQ(again.outcomes(0), "unchanged");
  EXPECT_EQ(again.revision(), resp.revision());
}

TEST(ProxyService, StaleResourceVersionConflicts) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(kWeb), &resp).ok());
  absl::Status s = svc.DoApply(Req(R"(upserts { service { metadata { name: "web" resource_version: 99 }
      spec { cluster_ips: "198.19.0.10" ports { port: 80 } } } })"), &resp);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_NE(std::string(s.message()).find("metadata.resourceVersion"), std::string::npos);
}

TEST(ProxyService, DeleteMissingIsNotFoundAndDryRunChangesNothing) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  EXPECT_EQ(svc.DoApply(Req(R"(deletes { kind: SERVICE name: "nope" })"), &resp).code(), absl::StatusCode::kNotFound);
  v1::ApplyRequest dry = Req(kWeb);
  dry.set_dry_run(true);
  ASSERT_TRUE(svc.DoApply(dry, &resp).ok());
  EXPECT_EQ(fake.applies, 0);
}

TEST(ProxyService, SelectorPicksWorkloads) {
  FakeDataplane fake;
  ProxyService svc(&fake, {});
  v1::ApplyResponse resp;
  ASSERT_TRUE(svc.DoApply(Req(R"(
    upserts { service { metadata { name: "fe" } spec { cluster_ips: "198.19.0.20"
      selector { key: "app" value: "webapp" } selector { key: "role" value: "frontend" }
      ports { name: "http" port: 80 target_port_name: "http" } } } }
    upserts { workload { metadata { name: "a" labels { key: "app" value: "webapp" } labels { key: "role" value: "frontend" } }
      addresses: "198.18.20.2" ports { name: "http" port: 8080 } } }
    upserts { workload { metadata { name: "b" labels { key: "app" value: "webapp" } labels { key: "role" value: "backend" } }
      addresses: "198.18.20.3" ports { name: "http" port: 8080 } } })"), &resp).ok());
  ASSERT_EQ(fake.last.services.size(), 1u);
  ASSERT_EQ(fake.last.services[0].ports[0].backends.size(), 1u);
  EXPECT_EQ(fake.last.services[0].ports[0].backends[0].addr.ToString(), "198.18.20.2");
}

}  // namespace
}  // namespace nftproxy::server
