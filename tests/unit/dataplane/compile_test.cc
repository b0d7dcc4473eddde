// The compiler (compile.cc): which chains, rules and map elements a model
// becomes, ticket shares, stable indexes, shards.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "dataplane/nft_elements.h"
#include "dataplane/ruleset.h"
#include "tests/unit/dataplane/test_services.h"

namespace nftproxy::dp {
namespace {

using testing::Ip;
using testing::Shares;
using testing::Text;
using testing::Web;

TEST(Compile, ClusterIpDispatchesToAConstantChain) {
  Model m;
  m.services.push_back(Web());
  Ruleset rs = Compile(m, "nftproxy");
  EXPECT_EQ(rs.vmap.size(), 4u);  // both families for both ports (v6 udp/53 has no endpoints: rejects)
  EXPECT_EQ(rs.vmap[(VmapKey{Ip("198.19.0.10"), L4Proto::kTcp, 80})].chain, "svc4/default/web/tcp/80");
  EXPECT_EQ(Text(rs, "svc4/default/web/tcp/80"),
            "\tchain svc4/default/web/tcp/80 {\n"
            "\t\tct mark set meta mark meta mark set numgen random mod 4096 offset 2147483648 goto pick4-0\n"
            "\t}\n");
  // Three v4 backends share 4096 tickets as evenly as integers allow.
  auto shares = Shares(rs, Family::kV4, kTicketBit);
  ASSERT_EQ(shares.size(), 3u);
  for (const auto& [addr, n] : shares) EXPECT_NEAR(n, 4096 / 3, 1) << addr;
  EXPECT_EQ(Shares(rs, Family::kV6, kTicketBit).size(), 1u);
  EXPECT_TRUE(rs.cluster_ips.count(Ip("198.19.0.10")));
  EXPECT_TRUE(rs.hairpin.count(Ip("198.18.12.2")));
  EXPECT_EQ(rs.shards, 1u);
}

TEST(BucketShares, ProportionalToWeight) {
  auto s = BucketShares({90, 10}, 4096);
  EXPECT_EQ(s[0] + s[1], 4096u);
  EXPECT_EQ(s[0], 3686u);
  s = BucketShares({1, 1, 1}, 3);
  EXPECT_EQ(s, (std::vector<uint32_t>{1, 1, 1}));
  // Tiny weights still get a bucket.
  s = BucketShares({100000, 1}, 4096);
  EXPECT_EQ(s[1], 1u);
  EXPECT_EQ(s[0] + s[1], 4096u);
}

TEST(Compile, WeightsBecomeTicketShares) {
  Service s = Web();
  s.ports[0].backends = {{Ip("198.18.10.2"), 8080, 90}, {Ip("198.18.11.2"), 8080, 10}};
  Model m;
  m.services.push_back(s);
  auto shares = Shares(Compile(m, "t"), Family::kV4, kTicketBit);
  EXPECT_EQ(shares["198.18.10.2"], 3686u);
  EXPECT_EQ(shares["198.18.11.2"], 410u);
}

TEST(Compile, EndpointChangeTouchesOnlyMapElements) {
  Model m;
  m.services.push_back(Web());
  Ruleset before = Compile(m, "t");
  m.services[0].ports[0].backends.pop_back();
  m.services[0].ports[0].backends.push_back({Ip("198.18.13.2"), 8080, 1});
  Ruleset after = Compile(m, "t", &before);
  EXPECT_EQ(before.chains, after.chains);
  EXPECT_EQ(before.vmap, after.vmap);
  EXPECT_NE(before.backends[0], after.backends[0]);
}

TEST(Compile, IndexesAreStableWhenServicesComeAndGo) {
  Model m;
  Service a = Web();
  a.name = "a";
  Service c = Web();
  c.name = "c";
  m.services = {a, c};
  Ruleset r1 = Compile(m, "t");
  Service b = Web();
  b.name = "b";
  m.services = {a, b, c};
  Ruleset r2 = Compile(m, "t", &r1);
  // a and c keep their chains (and tickets); b takes the next free index.
  EXPECT_EQ(r1.chains["svc4/default/c/tcp/80"], r2.chains["svc4/default/c/tcp/80"]);
  EXPECT_EQ(r2.indexes["default/b/tcp/80"], 4u);
  m.services = {b, c};
  Ruleset r3 = Compile(m, "t", &r2);
  EXPECT_EQ(r3.indexes["default/c/tcp/80"], r1.indexes["default/c/tcp/80"]);
  EXPECT_EQ(r3.chains.count("svc4/default/a/tcp/80"), 0u);
}

TEST(Compile, ManyServicesSpreadOverShards) {
  Model m;
  for (int i = 0; i < 1500; ++i) {
    Service s;
    s.ns = "default";
    s.name = "s" + std::to_string(i);
    s.cluster_ips = {*IpAddr::Parse("198.19." + std::to_string(i / 256) + "." + std::to_string(i % 256))};
    ServicePort p;
    p.port = 80;
    p.backends = {{Ip("198.18.10.2"), 8080, 1}};
    s.ports = {p};
    m.services.push_back(s);
  }
  Ruleset rs = Compile(m, "t");
  const uint32_t per_shard = 1u << kShardShift;
  EXPECT_EQ(rs.shards, (1500 + per_shard - 1) / per_shard);
  EXPECT_NE(Render(rs).find("goto pick4-1"), std::string::npos);
}

TEST(Compile, ExternalTrafficPolicyLocal) {
  Service s = Web();
  s.cluster_ips = {Ip("198.19.0.10")};
  s.lb_ips = {Ip("198.19.10.6")};
  s.lb_source_ranges = {*Cidr::Parse("198.18.100.7/24")};
  s.external_policy = Policy::kLocal;
  s.ports.resize(1);
  s.ports[0].node_port = 30080;
  s.ports[0].backends[0].local = true;
  Model m;
  m.services.push_back(s);
  Ruleset rs = Compile(m, "t");
  EXPECT_EQ(Text(rs, "ext4/default/web/tcp/80"),
            "\tchain ext4/default/web/tcp/80 {\n"
            "\t\tfib saddr type local ct label set 127 goto svc4/default/web/tcp/80\n"
            "\t\tip saddr @cluster-cidrs4 goto svc4/default/web/tcp/80\n"
            "\t\tgoto local4/default/web/tcp/80\n"
            "\t}\n");
  EXPECT_EQ(Text(rs, "fw4/default/web/tcp/80"),
            "\tchain fw4/default/web/tcp/80 {\n"
            "\t\tip saddr 198.18.100.0/24 goto ext4/default/web/tcp/80\n"
            "\t\tdrop\n"
            "\t}\n");
  EXPECT_EQ(rs.vmap[(VmapKey{Ip("198.19.10.6"), L4Proto::kTcp, 80})].chain, "fw4/default/web/tcp/80");
  EXPECT_EQ(rs.nodeports[(NodePortKey{Family::kV4, L4Proto::kTcp, 30080})].chain, "ext4/default/web/tcp/80");
  // Only the local backend is in the local ticket range.
  auto local = Shares(rs, Family::kV4, kTicketBit | kLocalBit);
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(local["198.18.10.2"], kBuckets);
}

TEST(Compile, AffinityRoundRobinAndHash) {
  Service s = Web();
  s.ports.resize(1);
  s.affinity_timeout_s = 10800;
  Model m;
  m.services.push_back(s);
  EXPECT_EQ(Text(Compile(m, "t"), "svc4/default/web/tcp/80"),
            "\tchain svc4/default/web/tcp/80 {\n"
            "\t\tct mark set meta mark meta mark set numgen random mod 4096 offset 2147483648\n"
            "\t\tmeta mark set ip saddr . ip daddr . meta l4proto . th dport map @affinity4\n"
            "\t\tupdate @affinity4 { ip saddr . ip daddr . meta l4proto . th dport timeout 3h : meta mark } "
            "goto pick4-0\n"
            "\t}\n");
  m.services[0].affinity_timeout_s = 0;
  m.services[0].lb = LbMode::kRoundRobin;
  Ruleset rr = Compile(m, "t");
  EXPECT_NE(Text(rr, "svc4/default/web/tcp/80").find("numgen inc mod 3 offset"), std::string::npos);
  EXPECT_EQ(Shares(rr, Family::kV4, kTicketBit).size(), 3u);
  m.services[0].lb = LbMode::kSourceHash;
  EXPECT_NE(Text(Compile(m, "t"), "svc6/default/web/tcp/80")
                .find("meta mark set jhash ip6 saddr mod 4096 seed 0x9e3779b9 offset 2147483648"),
            std::string::npos);
}

TEST(Compile, InternalTrafficPolicyLocalUsesLocalTickets) {
  Service s = Web();
  s.internal_policy = Policy::kLocal;
  Model m;
  m.services.push_back(s);
  Ruleset rs = Compile(m, "t");
  EXPECT_EQ(rs.vmap[(VmapKey{Ip("198.19.0.10"), L4Proto::kTcp, 80})].chain, "local4/default/web/tcp/80");
  EXPECT_EQ(rs.chains.count("svc4/default/web/tcp/80"), 0u);
  // No backend is local: the local range is empty, so the pick chain drops.
  EXPECT_TRUE(Shares(rs, Family::kV4, kTicketBit | kLocalBit).empty());
}

TEST(Compile, NodeCidrsAreDisjoint) {
  // The kernel refuses an interval that overlaps one already in the set
  // (EEXIST), so `--cluster-cidr 10.0.0.0/8 --cluster-cidr 10.0.5.0/24`, or
  // one CIDR given twice, made every commit fail (found by compiler_fuzz):
  // a CIDR inside another one is left out.
  auto cidrs = [](std::initializer_list<const char*> texts) {
    std::vector<Cidr> out;
    for (const char* t : texts) out.push_back(*Cidr::Parse(t));
    return out;
  };
  Model m;
  m.services.push_back(Web());
  m.node.cluster_cidrs = cidrs({"10.0.5.0/24", "10.1.2.3/16", "10.0.0.0/8", "fd00::/8", "10.0.0.0/8",
                                "fd00:10::/64", "192.0.2.0/24"});
  m.node.nodeport_cidrs = cidrs({"192.0.2.7/24", "192.0.2.0/24", "0.0.0.0/0"});
  const Ruleset rs = Compile(m, "t");
  EXPECT_EQ(rs.node.cluster_cidrs, cidrs({"10.0.0.0/8", "192.0.2.0/24", "fd00::/8"}));
  EXPECT_EQ(rs.node.nodeport_cidrs, cidrs({"0.0.0.0/0"}));
  // Each range is one start element (and one end element) on the wire.
  ElemChanges c;
  CollectCidrs(SetId::kClusterCidrs, rs.node.cluster_cidrs, &c);
  std::set<std::pair<std::string, bool>> keys;
  size_t n = 0;
  for (const char* set : {"cluster-cidrs4", "cluster-cidrs6"}) {
    for (const Elem& e : c.Set(set).elems) {
      keys.insert({std::string(e.key.begin(), e.key.begin() + e.key_len), e.interval_end});
      ++n;
    }
  }
  EXPECT_EQ(n, 6u);
  EXPECT_EQ(keys.size(), n);
  // Whatever the order the flags came in, it is the same table.
  std::reverse(m.node.cluster_cidrs.begin(), m.node.cluster_cidrs.end());
  EXPECT_TRUE(Ruleset::SameNode(Compile(m, "t").node, rs.node));
}

TEST(Compile, CountersAreOneNamedObjectPerServicePort) {
  Model m;
  m.node.counters = true;
  m.services.push_back(Web());
  Ruleset rs = Compile(m, "nftproxy");
  std::set<std::string> names;
  for (const auto& [name, owner] : rs.counters) {
    names.insert(name);
    EXPECT_EQ(owner, "service default/web");
  }
  EXPECT_EQ(names, (std::set<std::string>{"conns/default/web/tcp/80", "conns/default/web/udp/53"}));
  // Both families' chains count into the port's one counter, in the rule
  // that hands a new connection to the pick chain.
  EXPECT_EQ(Text(rs, "svc4/default/web/tcp/80"),
            "\tchain svc4/default/web/tcp/80 {\n"
            "\t\tct mark set meta mark counter name \"conns/default/web/tcp/80\" meta mark set numgen random mod "
            "4096 offset 2147483648 goto pick4-0\n"
            "\t}\n");
  EXPECT_NE(Text(rs, "svc6/default/web/tcp/80").find("counter name \"conns/default/web/tcp/80\""), std::string::npos);
  EXPECT_NE(Render(rs).find("\tcounter conns/default/web/tcp/80 {\n\t\tpackets 0 bytes 0\n\t}\n"), std::string::npos);
  // Off: no objects, no statements.
  m.node.counters = false;
  Ruleset off = Compile(m, "nftproxy");
  EXPECT_TRUE(off.counters.empty());
  EXPECT_EQ(Render(off).find("counter"), std::string::npos);
}

TEST(Compile, EndpointChangesLeaveCountersAlone) {
  Model m;
  m.node.counters = true;
  m.services.push_back(Web());
  const Ruleset before = Compile(m, "nftproxy");
  // A weight change, an endpoint added, one removed.
  m.services[0].ports[0].backends[0].weight = 3;
  m.services[0].ports[0].backends.push_back({Ip("198.18.13.2"), 8080, 1});
  m.services[0].ports[0].backends.erase(m.services[0].ports[0].backends.begin() + 1);
  const Ruleset after = Compile(m, "nftproxy", &before);
  Ruleset removed, added;
  Diff(before, after, &removed, &added);
  EXPECT_TRUE(removed.counters.empty());
  EXPECT_TRUE(added.counters.empty());
  EXPECT_TRUE(removed.chains.empty());
  EXPECT_FALSE(added.backends[0].empty());
  // The port goes: its counter goes with it.
  m.services[0].ports.pop_back();
  const Ruleset fewer = Compile(m, "nftproxy", &after);
  Ruleset removed2, added2;
  Diff(after, fewer, &removed2, &added2);
  EXPECT_EQ(removed2.counters.size(), 1u);
  EXPECT_TRUE(removed2.counters.count("conns/default/web/udp/53"));
  EXPECT_TRUE(added2.counters.empty());
}

TEST(Compile, EndpointCountersAreNamedPerEndpointAndSurviveRenumbering) {
  Model m;
  m.node.counters = true;
  m.node.endpoint_counters = true;
  m.services.push_back(Web());
  const Ruleset before = Compile(m, "nftproxy");
  // Every interval names its endpoint's counter, which exists.
  size_t named = 0;
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : before.backends[fam]) {
      EXPECT_FALSE(iv.counter.empty());
      EXPECT_EQ(before.counters.count(iv.counter), 1u) << iv.counter;
      std::string addr = iv.addr.ToString();
      std::replace(addr.begin(), addr.end(), ':', '-');
      EXPECT_NE(iv.counter.find(addr), std::string::npos) << iv.counter;
      ++named;
    }
  }
  EXPECT_GT(named, 0u);
  // The pick chain counts before it DNATs, and the shard has the maps.
  const std::string text = Render(before);
  EXPECT_NE(text.find("\tmap epconns4-0 {\n\t\ttype mark : counter\n\t\tflags interval\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\t\tcounter name meta mark map @epconns4-0\n\t\tmeta l4proto tcp dnat ip to meta mark map "
                      "@backends4-0\n"),
            std::string::npos)
      << text;
  // Another endpoint: the tickets are renumbered, the old endpoints'
  // counters stay (no removal, one new counter object).
  m.services[0].ports[0].backends.push_back({Ip("198.18.13.2"), 8080, 1});
  const Ruleset after = Compile(m, "nftproxy", &before);
  Ruleset removed, added;
  Diff(before, after, &removed, &added);
  EXPECT_TRUE(removed.counters.empty());
  ASSERT_EQ(added.counters.size(), 1u);
  EXPECT_EQ(added.counters.begin()->first, "epconns/default/web/tcp/80/198.18.13.2/8080");
  EXPECT_FALSE(removed.backends[0].empty());
  // That endpoint goes again: its counter goes, the others stay.
  m.services[0].ports[0].backends.pop_back();
  const Ruleset back = Compile(m, "nftproxy", &after);
  Ruleset removed2, added2;
  Diff(after, back, &removed2, &added2);
  ASSERT_EQ(removed2.counters.size(), 1u);
  EXPECT_EQ(removed2.counters.begin()->first, "epconns/default/web/tcp/80/198.18.13.2/8080");
  EXPECT_TRUE(added2.counters.empty());
  // Off: no per-endpoint objects, maps or statements.
  m.node.endpoint_counters = false;
  const Ruleset off = Compile(m, "nftproxy");
  EXPECT_EQ(Render(off).find("epconns"), std::string::npos);
  for (const auto& [first, iv] : off.backends[0]) EXPECT_TRUE(iv.counter.empty());
}

}  // namespace
}  // namespace nftproxy::dp
