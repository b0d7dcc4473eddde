// The compiler's output for small models, as nft text.
#include "dataplane/ruleset.h"

#include <gtest/gtest.h>

namespace nftproxy::dp {
namespace {

IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

Service Web() {
  Service s;
  s.ns = "default";
  s.name = "web";
  s.vips = {Ip("198.19.0.10"), Ip("fd00:96::10")};
  ServicePort http;
  http.name = "http";
  http.port = 80;
  http.backends = {{Ip("198.18.10.2"), 8080, 1}, {Ip("198.18.11.2"), 8080, 1},
                   {Ip("198.18.12.2"), 8080, 1}, {Ip("fd00:10::2"), 8080, 1}};
  ServicePort dns;
  dns.name = "dns";
  dns.proto = L4Proto::kUdp;
  dns.port = 53;
  dns.backends = {{Ip("198.18.10.2"), 5353, 1}};
  s.ports = {http, dns};
  return s;
}

TEST(Compile, SmallModelAsNftText) {
  Model m;
  m.services.push_back(Web());
  const std::string want = R"(table inet nftproxy {
	map service-ips4 {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 198.19.0.10 . tcp . 80 : goto svc4/default/web/tcp/80,
			     198.19.0.10 . udp . 53 : goto svc4/default/web/udp/53 }
	}

	map service-ips6 {
		type ipv6_addr . inet_proto . inet_service : verdict
		elements = { fd00:96::10 . tcp . 80 : goto svc6/default/web/tcp/80,
			     fd00:96::10 . udp . 53 : goto svc6/default/web/udp/53 }
	}

	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips4
		ip6 daddr . meta l4proto . th dport vmap @service-ips6
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}

	chain output {
		type nat hook output priority -100; policy accept;
		jump services
	}

	chain svc4/default/web/tcp/80 {
		meta l4proto tcp numgen random mod 3 < 1 dnat ip to 198.18.10.2:8080
		meta l4proto tcp numgen random mod 2 < 1 dnat ip to 198.18.11.2:8080
		meta l4proto tcp dnat ip to 198.18.12.2:8080
	}

	chain svc4/default/web/udp/53 {
		meta l4proto udp dnat ip to 198.18.10.2:5353
	}

	chain svc6/default/web/tcp/80 {
		meta l4proto tcp dnat ip6 to [fd00:10::2]:8080
	}

	chain svc6/default/web/udp/53 {
	}
}
)";
  EXPECT_EQ(Render(Compile(m, "nftproxy")), want);
}

TEST(Compile, WeightsTakeShareOfRemainder) {
  Model m;
  Service s = Web();
  s.ports.resize(1);
  s.ports[0].backends = {{Ip("198.18.10.2"), 8080, 90}, {Ip("198.18.11.2"), 8080, 10},
                         {Ip("198.18.12.2"), 8080, 0}};
  m.services.push_back(s);
  Ruleset rs = Compile(m, "t");
  const Chain& c = rs.chains.at("svc4/default/web/tcp/80");
  ASSERT_EQ(c.rules.size(), 2u);  // weight 0 gets no rule
  EXPECT_EQ(c.rules[0].pick, Pick::kRandom);
  EXPECT_EQ(c.rules[0].modulus, 100u);
  EXPECT_EQ(c.rules[0].below, 90u);
  EXPECT_EQ(c.rules[1].pick, Pick::kAlways);
}

TEST(Compile, RoundRobinAndSourceHash) {
  Model m;
  Service s = Web();
  s.ports.resize(1);
  s.lb = LbMode::kRoundRobin;
  m.services.push_back(s);
  std::string text = Render(Compile(m, "t"));
  EXPECT_NE(text.find("numgen inc mod 3 < 1 dnat ip to 198.18.10.2:8080"), std::string::npos) << text;
  m.services[0].lb = LbMode::kSourceHash;
  text = Render(Compile(m, "t"));
  EXPECT_NE(text.find("jhash ip saddr mod 3 seed 0x9e3779b9 < 1 dnat ip to 198.18.10.2:8080"), std::string::npos) << text;
}

TEST(Compile, EqualModelsGiveEqualRulesets) {
  Model a, b;
  a.services.push_back(Web());
  b.services.push_back(Web());
  EXPECT_EQ(Compile(a, "t"), Compile(b, "t"));
  b.services[0].ports[0].backends[0].port = 9999;
  EXPECT_FALSE(Compile(a, "t") == Compile(b, "t"));
}

TEST(IpAddr, ParseAndFormat) {
  EXPECT_EQ(Ip("198.19.0.10").ToString(), "198.19.0.10");
  EXPECT_EQ(Ip("FD00:0:0::10").ToString(), "fd00::10");
  EXPECT_FALSE(IpAddr::Parse("198.19.0.999").ok());
  EXPECT_FALSE(IpAddr::Parse("web").ok());
  EXPECT_TRUE(Cidr::Parse("198.18.0.0/15").ok());
  EXPECT_FALSE(Cidr::Parse("198.18.0.0/33").ok());
}

}  // namespace
}  // namespace nftproxy::dp
