// NftDataplane's bookkeeping against the fake writer: indexes handed out by
// a refused change go back, a refused delta falls back to a full commit,
// removed UDP endpoints get their flows flushed.
#include "dataplane/nft_dataplane.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/unit/dataplane/fake_ruleset_writer.h"

namespace nftproxy::dp {
namespace {

IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

class RecordingFlusher final : public FlowFlusher {
 public:
  absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) override {
    flushed.insert(flushed.end(), targets.begin(), targets.end());
    return static_cast<int>(targets.size());
  }
  std::vector<FlowTarget> flushed;
};

Service Dns(const char* name, const char* vip, const char* backend) {
  Service s;
  s.ns = "default";
  s.name = name;
  s.cluster_ips = {Ip(vip)};
  ServicePort p;
  p.proto = L4Proto::kUdp;
  p.port = 53;
  p.backends = {{Ip(backend), 5353, 1}};
  s.ports = {p};
  return s;
}

class NftDataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = new testing::FakeRulesetWriter;
    flusher_ = new RecordingFlusher;
    dp_ = NftDataplane::Create("t", std::unique_ptr<RulesetWriter>(fake_), std::unique_ptr<FlowFlusher>(flusher_));
  }
  void ExpectKernelMatches(const Model& m) {
    EXPECT_EQ(testing::RulesetDifference(fake_->state(), Compile(m, "t", &dp_->indexes(), dp_->shards())), "");
  }

  testing::FakeRulesetWriter* fake_;
  RecordingFlusher* flusher_;
  std::unique_ptr<NftDataplane> dp_;
};

TEST_F(NftDataplaneTest, UpdateBeforeApplyIsRefused) {
  EXPECT_EQ(dp_->Update(ModelChange{}, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dp_->Installed(), "");
}

TEST_F(NftDataplaneTest, ChangesAreDeltasAndIdenticalStateSendsNothing) {
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1")};
  ApplyResult r;
  ASSERT_TRUE(dp_->Apply(m, &r).ok());
  EXPECT_TRUE(r.full);
  ASSERT_TRUE(dp_->Apply(m, &r).ok());
  EXPECT_FALSE(r.changed);
  m.services.push_back(Dns("b", "198.19.0.2", "10.0.0.2"));
  ASSERT_TRUE(dp_->Apply(m, &r).ok());
  EXPECT_TRUE(r.changed);
  EXPECT_FALSE(r.full);
  EXPECT_EQ(fake_->full_commits(), 1);
  EXPECT_EQ(fake_->delta_commits(), 1);
  ExpectKernelMatches(m);
  EXPECT_EQ(dp_->Installed(), Render(Compile(m, "t", &dp_->indexes(), dp_->shards())));
}

TEST_F(NftDataplaneTest, RefusedDeltaFallsBackToAFullCommit) {
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  fake_->FailNext(1);
  ModelChange c;
  c.upserts = {Dns("b", "198.19.0.2", "10.0.0.2")};
  ApplyResult r;
  ASSERT_TRUE(dp_->Update(c, &r).ok());
  EXPECT_TRUE(r.full);
  EXPECT_EQ(fake_->full_commits(), 2);
  m.services.push_back(c.upserts[0]);
  ExpectKernelMatches(m);
}

TEST_F(NftDataplaneTest, RefusedChangeGivesItsIndexesBack) {
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  const IndexMap before = dp_->indexes();
  fake_->FailNext(2);  // the delta and its full fallback
  ModelChange c;
  c.upserts = {Dns("b", "198.19.0.2", "10.0.0.2")};
  EXPECT_FALSE(dp_->Update(c, nullptr).ok());
  EXPECT_EQ(dp_->indexes(), before);
  EXPECT_EQ(dp_->InstalledModel().services, m.services);
  ExpectKernelMatches(m);
  // The same change later takes the same (lowest free) index.
  ASSERT_TRUE(dp_->Update(c, nullptr).ok());
  EXPECT_EQ(dp_->indexes().at("default/b/udp/53"), 1u);
}

TEST_F(NftDataplaneTest, SharedAddressesStayWhileReferenced) {
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1"), Dns("b", "198.19.0.1", "10.0.0.1")};
  m.services[1].ports[0].port = 54;
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  ModelChange c;
  c.removes = {"default/a"};
  ASSERT_TRUE(dp_->Update(c, nullptr).ok());
  EXPECT_TRUE(fake_->state().cluster_ips.count(Ip("198.19.0.1")));
  EXPECT_TRUE(fake_->state().hairpin.count(Ip("10.0.0.1")));
  EXPECT_TRUE(flusher_->flushed.empty());  // 10.0.0.1:5353 still serves b
  c.removes = {"default/b"};
  ASSERT_TRUE(dp_->Update(c, nullptr).ok());
  EXPECT_FALSE(fake_->state().cluster_ips.count(Ip("198.19.0.1")));
  ASSERT_EQ(flusher_->flushed.size(), 1u);
  EXPECT_EQ(flusher_->flushed[0], (FlowTarget{Ip("10.0.0.1"), 5353}));
}

TEST_F(NftDataplaneTest, NodeSettingsChangeReplacesTheTable) {
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  m.node.cluster_cidrs = {*Cidr::Parse("10.0.0.7/16")};
  ApplyResult r;
  ASSERT_TRUE(dp_->Apply(m, &r).ok());
  EXPECT_TRUE(r.full);
  EXPECT_EQ(fake_->state().node.cluster_cidrs[0].ToString(), "10.0.0.0/16");
}

}  // namespace
}  // namespace nftproxy::dp

namespace nftproxy::dp {
namespace {

// The lines of `text` that mention `needle`, without the separators of a
// multi-element listing (the last element of a list has none).
std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    for (const char* tail : {",", " }"}) {
      if (line.size() >= strlen(tail) && line.compare(line.size() - strlen(tail), strlen(tail), tail) == 0) {
        line.resize(line.size() - strlen(tail));
      }
    }
    if (line.find(needle) != std::string::npos) out.push_back(line);
    at = end + 1;
  }
  return out;
}

TEST_F(NftDataplaneTest, SnapshotRendersWhatWasInstalledThen) {
  EXPECT_EQ(dp_->Snapshot(), nullptr);
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  const std::string before = dp_->Installed();
  std::unique_ptr<InstalledRuleset> snap = dp_->Snapshot();
  ASSERT_NE(snap, nullptr);
  ModelChange change;
  change.upserts = {Dns("b", "198.19.0.2", "10.0.0.2")};
  ASSERT_TRUE(dp_->Update(change, nullptr).ok());
  std::string text;
  snap->Render([&text](absl::string_view piece) {
    text.append(piece.data(), piece.size());
    return true;
  });
  EXPECT_EQ(text, before);
  EXPECT_NE(dp_->Installed(), before);
}

TEST_F(NftDataplaneTest, InstalledServiceHoldsThatServiceOnly) {
  EXPECT_EQ(dp_->InstalledService("default/a"), "");
  Model m;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1"), Dns("b", "198.19.0.2", "10.0.0.2")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  const std::string all = dp_->Installed();
  const std::string a = dp_->InstalledService("default/a");
  // Every line of the whole table that mentions service a is in its part,
  // and nothing of service b.
  EXPECT_FALSE(LinesWith(all, "/default/a/").empty());
  EXPECT_EQ(LinesWith(a, "/default/a/"), LinesWith(all, "/default/a/"));
  EXPECT_TRUE(LinesWith(a, "/default/b/").empty());
  EXPECT_TRUE(LinesWith(a, "198.19.0.2").empty());
  EXPECT_FALSE(LinesWith(a, "198.19.0.1").empty());
  // An unknown service: the fixed table only.
  EXPECT_TRUE(LinesWith(dp_->InstalledService("default/zzz"), "/default/").empty());
}

TEST_F(NftDataplaneTest, CountersAreCreatedOnceAndGoWithTheirServicePort) {
  Model m;
  m.node.counters = true;
  m.services = {Dns("a", "198.19.0.1", "10.0.0.1"), Dns("b", "198.19.0.2", "10.0.0.2")};
  ASSERT_TRUE(dp_->Apply(m, nullptr).ok());
  EXPECT_EQ(fake_->counters_created(), 2u);
  // Endpoint changes (a weight, a second endpoint) and another service
  // added: deltas that create only the new service's counter.
  ModelChange c;
  Service a = m.services[0];
  a.ports[0].backends[0].weight = 7;
  a.ports[0].backends.push_back({Ip("10.0.0.9"), 5353, 1});
  c.upserts = {a, Dns("c", "198.19.0.3", "10.0.0.3")};
  ApplyResult r;
  ASSERT_TRUE(dp_->Update(c, &r).ok());
  EXPECT_FALSE(r.full);
  EXPECT_EQ(fake_->counters_created(), 3u);
  // A service removed: its counter goes after the chain that named it.
  c = ModelChange{};
  c.removes = {"default/b"};
  ASSERT_TRUE(dp_->Update(c, &r).ok());
  EXPECT_FALSE(r.full);
  EXPECT_EQ(fake_->state().counters.count("conns/default/b/udp/53"), 0u);
  EXPECT_EQ(fake_->state().counters.count("conns/default/a/udp/53"), 1u);
  EXPECT_EQ(fake_->counters_created(), 3u);
  EXPECT_EQ(fake_->delta_commits(), 2);
}

TEST(ConnectionsOf, ServicePortsFromCounterNames) {
  KernelCounters k;
  k["conns/shop/web/tcp/443"] = {12, 720};
  k["conns/default/dns/udp/53"] = {3, 180};
  k["someone-elses"] = {1, 1};
  k["conns/bad/key"] = {1, 1};
  const std::vector<PortConnections> got = ConnectionsOf(k);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].ns, "default");
  EXPECT_EQ(got[0].service, "dns");
  EXPECT_EQ(got[0].proto, L4Proto::kUdp);
  EXPECT_EQ(got[0].port, 53);
  EXPECT_EQ(got[0].connections, 3u);
  EXPECT_EQ(got[1].service, "web");
  EXPECT_EQ(got[1].port, 443);
  EXPECT_EQ(got[1].connections, 12u);
  EXPECT_TRUE(got[0].endpoints.empty());
}

TEST(ConnectionsOf, EndpointsUnderTheirServicePort) {
  KernelCounters k;
  k["conns/shop/web/tcp/443"] = {12, 720};
  k[EndpointCounterName("shop/web/tcp/443", *IpAddr::Parse("10.0.0.9"), 8443)] = {5, 300};
  k[EndpointCounterName("shop/web/tcp/443", *IpAddr::Parse("10.0.0.10"), 8443)] = {7, 420};
  k[EndpointCounterName("shop/web/tcp/443", *IpAddr::Parse("fd00::1"), 8443)] = {0, 0};
  k["epconns/shop/web/tcp/443/nonsense/1"] = {1, 1};
  const std::vector<PortConnections> got = ConnectionsOf(k);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].connections, 12u);
  ASSERT_EQ(got[0].endpoints.size(), 3u);
  // By address: 10.0.0.9 before 10.0.0.10, IPv4 before IPv6.
  EXPECT_EQ(got[0].endpoints[0].addr.ToString(), "10.0.0.9");
  EXPECT_EQ(got[0].endpoints[0].connections, 5u);
  EXPECT_EQ(got[0].endpoints[1].addr.ToString(), "10.0.0.10");
  EXPECT_EQ(got[0].endpoints[1].port, 8443);
  EXPECT_EQ(got[0].endpoints[1].connections, 7u);
  EXPECT_EQ(got[0].endpoints[2].addr.ToString(), "fd00::1");
}

TEST(RuleText, EndpointCounterMapNamesReadBackAsGiven) {
  // 12 characters: libnftnl would read the next attribute's bytes with it.
  const std::string name = EpConnsMapName(Family::kV4, 100);
  ASSERT_EQ(name.size() % 4, 0u);
  RuleStmts r;
  Stmt s;
  s.kind = StmtKind::kCounterMarkMap;
  s.name = name.c_str();
  r.push_back(s);
  const std::string text = RuleText(r);
  EXPECT_NE(text.find("set " + name + " "), std::string::npos) << text;
}

TEST(RuleText, CounterReferenceIsAnObjrefByName) {
  RuleStmts r;
  Rule rule;
  rule.save_mark = true;
  rule.counter = ConnCounterName("default/web/tcp/80");
  LowerRule(rule, &r);
  // libnftnl's notation of an objref: "type 1 name <name>" (1: counter).
  EXPECT_NE(RuleText(r).find("[ type 1 name conns/default/web/tcp/80  ]"), std::string::npos) << RuleText(r);
  // A name whose length is a multiple of 4 (libnftnl builds it without its
  // NUL) reads back as it was given.
  Rule four = rule;
  four.counter = ConnCounterName("default/web/tcp/80");  // 24 characters, and a goto after it
  four.verdict = Rule::Verdict::kGoto;
  four.target = "pick4-0";
  RuleStmts r4;
  LowerRule(four, &r4);
  EXPECT_NE(RuleText(r4).find("[ type 1 name conns/default/web/tcp/80  ]"), std::string::npos) << RuleText(r4);
}

}  // namespace
}  // namespace nftproxy::dp
