// Trace decoding (trace.cc): synthetic NFT_MSG_TRACE messages, as the
// kernel sends them, parsed and decoded into nftproxy's words.
#include "dataplane/trace.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstring>
#include <vector>

#include "dataplane/ir.h"

namespace nftproxy::dp {
namespace {

IpAddr Ip(const char* text) { return *IpAddr::Parse(text); }

struct Event {
  const char* table = "nftproxy";
  const char* chain = "";
  uint32_t type = NFT_TRACETYPE_RULE;
  int32_t verdict = NFT_CONTINUE;
  const char* target = nullptr;
  uint32_t policy = 0;
  uint32_t mark = 0;
  uint64_t handle = 4;
  bool headers = false;
};

// An IPv4 TCP packet 198.18.1.2:40000 -> 198.19.0.10:80.
std::string NetworkHeader() {
  std::string h(20, '\0');
  h[0] = 0x45;
  h[9] = 6;
  const uint8_t src[] = {198, 18, 1, 2}, dst[] = {198, 19, 0, 10};
  memcpy(&h[12], src, 4);
  memcpy(&h[16], dst, 4);
  return h;
}
std::string TransportHeader() {
  std::string t(20, '\0');
  t[0] = static_cast<char>(40000 >> 8);
  t[1] = static_cast<char>(40000 & 0xff);
  t[3] = 80;
  return t;
}

// The message the kernel would send for `e` (packet id 7).
std::vector<char> Message(const Event& e) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE;
  auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  g->nfgen_family = NFPROTO_INET;
  mnl_attr_put_strz(nlh, NFTA_TRACE_TABLE, e.table);
  mnl_attr_put_strz(nlh, NFTA_TRACE_CHAIN, e.chain);
  mnl_attr_put_u32(nlh, NFTA_TRACE_ID, 7);
  mnl_attr_put_u32(nlh, NFTA_TRACE_TYPE, htonl(e.type));
  mnl_attr_put_u32(nlh, NFTA_TRACE_NFPROTO, htonl(NFPROTO_IPV4));
  if (e.type == NFT_TRACETYPE_POLICY) {
    mnl_attr_put_u32(nlh, NFTA_TRACE_POLICY, htonl(e.policy));
  } else {
    mnl_attr_put_u64(nlh, NFTA_TRACE_RULE_HANDLE, htobe64(e.handle));
    nlattr* nest = mnl_attr_nest_start(nlh, NFTA_TRACE_VERDICT);
    mnl_attr_put_u32(nlh, NFTA_VERDICT_CODE, htonl(static_cast<uint32_t>(e.verdict)));
    if (e.target != nullptr) mnl_attr_put_strz(nlh, NFTA_VERDICT_CHAIN, e.target);
    mnl_attr_nest_end(nlh, nest);
  }
  if (e.mark != 0) mnl_attr_put_u32(nlh, NFTA_TRACE_MARK, htonl(e.mark));
  if (e.headers) {
    const std::string n = NetworkHeader(), t = TransportHeader();
    mnl_attr_put(nlh, NFTA_TRACE_NETWORK_HEADER, n.size(), n.data());
    mnl_attr_put(nlh, NFTA_TRACE_TRANSPORT_HEADER, t.size(), t.data());
  }
  buf.resize(nlh->nlmsg_len);
  return buf;
}

TraceAttrs Parsed(const Event& e) {
  std::vector<char> m = Message(e);
  std::optional<TraceAttrs> a = ParseTraceMessage(reinterpret_cast<const nlmsghdr*>(m.data()));
  EXPECT_TRUE(a.has_value());
  return a.value_or(TraceAttrs{});
}

TraceNames Names() {
  TraceNames n;
  n.table = "nftproxy";
  // Service port index 0: two endpoints, half the buckets each; local tickets too.
  n.backends[0][0x80000000u] = Interval{0x800007ffu, Ip("198.18.10.2"), 8080};
  n.backends[0][0x80000800u] = Interval{0x80000fffu, Ip("198.18.11.2"), 8080};
  n.backends[0][0xc0000000u] = Interval{0xc0000fffu, Ip("198.18.10.2"), 8080};
  n.port_keys[0] = "default/web/tcp/80";
  n.port_keys[1] = "default/empty/tcp/80";
  n.endpoint_names["default/web 198.18.11.2"] = "b1";
  return n;
}

// Feeds events; returns the steps the decoder finished.
std::vector<TraceStep> Feed(TraceDecoder& d, const std::vector<Event>& events) {
  std::vector<TraceStep> out;
  for (const Event& e : events) {
    if (std::optional<TraceStep> s = d.Add(Parsed(e))) out.push_back(*s);
  }
  return out;
}

// The trace table's own events come first (its chain at raw priority).
const Event kTraceRule{.table = "nftproxy-trace", .chain = "trace-prerouting", .headers = true};
const Event kTracePolicy{.table = "nftproxy-trace", .chain = "trace-prerouting", .type = NFT_TRACETYPE_POLICY,
                         .policy = NF_ACCEPT};

TEST(TraceParse, ReadsEveryAttribute) {
  TraceAttrs a = Parsed({.chain = "svc4/default/web/tcp/80", .verdict = NFT_GOTO, .target = "pick4-0",
                         .mark = 0x80000abc, .handle = 42, .headers = true});
  EXPECT_EQ(a.id, 7u);
  EXPECT_EQ(a.table, "nftproxy");
  EXPECT_EQ(a.chain, "svc4/default/web/tcp/80");
  EXPECT_EQ(a.type, static_cast<uint32_t>(NFT_TRACETYPE_RULE));
  EXPECT_TRUE(a.has_verdict);
  EXPECT_EQ(a.verdict, NFT_GOTO);
  EXPECT_EQ(a.verdict_chain, "pick4-0");
  EXPECT_EQ(a.rule_handle, 42u);
  EXPECT_TRUE(a.has_mark);
  EXPECT_EQ(a.mark, 0x80000abcu);
  EXPECT_EQ(a.nfproto, static_cast<uint32_t>(NFPROTO_IPV4));
  EXPECT_EQ(a.network_header, NetworkHeader());
  EXPECT_EQ(a.family, NFPROTO_INET);
}

TEST(TraceParse, IgnoresOtherMessages) {
  std::vector<char> m = Message({.chain = "x"});
  reinterpret_cast<nlmsghdr*>(m.data())->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE;
  EXPECT_FALSE(ParseTraceMessage(reinterpret_cast<const nlmsghdr*>(m.data())).has_value());
}

TEST(TraceDecode, WorkingFlowNamesServiceTicketAndEndpoint) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps = Feed(
      d, {kTraceRule, kTracePolicy,
          {.chain = "prerouting", .verdict = NFT_JUMP, .target = "services", .headers = true},
          {.chain = "services", .verdict = NFT_GOTO, .target = "svc4/default/web/tcp/80"},
          {.chain = "svc4/default/web/tcp/80", .verdict = NFT_GOTO, .target = "pick4-0", .mark = 0x80000abc},
          {.chain = "pick4-0", .verdict = NF_ACCEPT, .mark = 0x80000abc}});
  ASSERT_EQ(steps.size(), 1u);
  const TraceStep& s = steps[0];
  EXPECT_EQ(s.packet, "tcp 198.18.1.2:40000 -> 198.19.0.10:80");
  EXPECT_EQ(s.hook, "prerouting");
  EXPECT_EQ(s.service, "default/web");
  EXPECT_EQ(s.service_port, "default/web/tcp/80");
  EXPECT_EQ(s.ticket, 0x80000abcu);
  EXPECT_EQ(s.endpoint, "198.18.11.2:8080");
  EXPECT_EQ(s.endpoint_name, "b1");
  EXPECT_EQ(s.verdict, "dnat");
  EXPECT_EQ(s.Line(),
            "tcp 198.18.1.2:40000 -> 198.19.0.10:80  prerouting: services map -> svc4/default/web/tcp/80 (service "
            "default/web) -> ticket 0x80000abc -> pick4-0 -> dnat 198.18.11.2:8080 (endpoint b1) -> accepted");
}

TEST(TraceDecode, NoEndpointsIsRejected) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps = Feed(
      d, {{.chain = "prerouting", .verdict = NFT_JUMP, .target = "services", .headers = true},
          {.chain = "services", .verdict = NFT_GOTO, .target = "svc4/default/empty/tcp/80"},
          {.chain = "svc4/default/empty/tcp/80", .verdict = NFT_GOTO, .target = "pick4-0", .mark = 0x80001123},
          {.chain = "pick4-0", .verdict = NF_DROP, .mark = 0x80001123, .handle = 9}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].verdict, "reject");
  EXPECT_EQ(steps[0].service, "default/empty");
  EXPECT_EQ(steps[0].decided_by, "chain pick4-0 rule 9");
  EXPECT_NE(steps[0].Line().find("no endpoints -> rejected (chain pick4-0 rule 9)"), std::string::npos)
      << steps[0].Line();
}

TEST(TraceDecode, LocalPolicyWithoutLocalEndpointIsDropped) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps = Feed(
      d, {{.chain = "prerouting", .verdict = NFT_JUMP, .target = "services", .headers = true},
          {.chain = "services", .verdict = NFT_GOTO, .target = "ext4/default/web/tcp/80"},
          {.chain = "ext4/default/web/tcp/80", .verdict = NFT_GOTO, .target = "local4/default/web/tcp/80"},
          {.chain = "local4/default/web/tcp/80", .verdict = NFT_GOTO, .target = "pick4-0", .mark = 0xc0000001},
          {.chain = "pick4-0", .verdict = NF_DROP, .mark = 0xc0000001, .handle = 8}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].verdict, "drop");
  EXPECT_EQ(steps[0].Line(),
            "tcp 198.18.1.2:40000 -> 198.19.0.10:80  prerouting: frontend map -> ext4/default/web/tcp/80 (service "
            "default/web) -> local4/default/web/tcp/80 -> ticket 0xc0000001 -> pick4-0 -> no local endpoint "
            "(traffic policy Local) -> dropped (chain pick4-0 rule 8)");
}

TEST(TraceDecode, WrongPortOnClusterIpIsRejected) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps = Feed(d, {{.chain = "prerouting", .verdict = NFT_JUMP, .target = "services"},
                                          {.chain = "services", .verdict = NF_DROP, .handle = 3}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].verdict, "reject");
  EXPECT_EQ(steps[0].decided_by, "chain services rule 3");
}

TEST(TraceDecode, MasqueradeInPostrouting) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps =
      Feed(d, {{.chain = "postrouting", .verdict = NFT_JUMP, .target = "masquerading", .headers = true},
               {.chain = "masquerading", .verdict = NF_ACCEPT}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_TRUE(steps[0].masquerade);
  EXPECT_EQ(steps[0].Line(), "tcp 198.18.1.2:40000 -> 198.19.0.10:80  postrouting: masquerade -> accepted");
}

TEST(TraceDecode, PostroutingWithoutMasquerade) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps =
      Feed(d, {{.chain = "postrouting", .type = NFT_TRACETYPE_POLICY, .policy = NF_ACCEPT, .headers = true}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].Line(), "tcp 198.18.1.2:40000 -> 198.19.0.10:80  postrouting: not masqueraded -> accepted");
}

TEST(TraceDecode, QuietTraversalsAreNotReported) {
  TraceDecoder d(Names());
  // The trace table itself, and mark-restore accepting.
  EXPECT_TRUE(Feed(d, {kTraceRule, kTracePolicy,
                       {.chain = "mark-restore", .verdict = NFT_CONTINUE},
                       {.chain = "mark-restore", .type = NFT_TRACETYPE_POLICY, .policy = NF_ACCEPT}})
                  .empty());
}

TEST(TraceDecode, DropInAnotherTable) {
  TraceDecoder d(Names());
  std::vector<TraceStep> steps =
      Feed(d, {{.table = "filter", .chain = "input", .verdict = NF_DROP, .handle = 5, .headers = true}});
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].verdict, "drop");
  EXPECT_EQ(steps[0].Line(),
            "tcp 198.18.1.2:40000 -> 198.19.0.10:80  table filter chain input: dropped (rule 5)");
}

TEST(TraceTable, RuleText) {
  TraceFilter f{Ip("198.18.1.2"), Ip("198.19.0.10"), L4Proto::kUdp, 53};
  const std::string text = TraceTableText("nftproxy", f);
  EXPECT_NE(text.find("table inet nftproxy-trace {"), std::string::npos) << text;
  EXPECT_NE(text.find("type filter hook prerouting priority raw; policy accept;"), std::string::npos) << text;
  EXPECT_NE(text.find("ip saddr 198.18.1.2 ip daddr 198.19.0.10 meta l4proto udp th dport 53 meta nftrace set 1"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace nftproxy::dp
