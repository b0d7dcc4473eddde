// Names (names.cc): every object name built in one place.
#include "dataplane/names.h"

#include <gtest/gtest.h>

namespace nftproxy::dp {
namespace {

TEST(Names, FixedSetsPerFamily) {
  EXPECT_EQ(SetName(SetId::kServiceIps, Family::kV4), "service-ips4");
  EXPECT_EQ(SetName(SetId::kNodePorts, Family::kV6), "nodeports6");
  EXPECT_EQ(SetName(SetId::kClusterIps, Family::kV4), "cluster-ips4");
  EXPECT_EQ(SetName(SetId::kClusterCidrs, Family::kV6), "cluster-cidrs6");
  EXPECT_EQ(SetName(SetId::kNodePortAddrs, Family::kV4), "nodeport-addrs4");
  EXPECT_EQ(SetName(SetId::kHairpin, Family::kV6), "hairpin6");
  EXPECT_EQ(SetName(SetId::kAffinity, Family::kV4), "affinity4");
  // Statements keep pointers to these: the same object every time.
  EXPECT_EQ(&SetName(SetId::kHairpin, Family::kV4), &SetName(SetId::kHairpin, Family::kV4));
}

TEST(Names, ShardAndServiceChains) {
  EXPECT_EQ(BackendsMapName(Family::kV6, 3), "backends6-3");
  EXPECT_EQ(PickChainName(Family::kV4, 0), "pick4-0");
  EXPECT_EQ(ServiceChainName(ChainKind::kSvc, Family::kV4, "ns/a/tcp/80"), "svc4/ns/a/tcp/80");
  EXPECT_EQ(ServiceChainName(ChainKind::kLocal, Family::kV6, "ns/a/tcp/80"), "local6/ns/a/tcp/80");
  EXPECT_EQ(ServiceChainName(ChainKind::kExt, Family::kV4, "ns/a/udp/53"), "ext4/ns/a/udp/53");
  EXPECT_EQ(ServiceChainName(ChainKind::kFw, Family::kV4, "ns/a/tcp/80"), "fw4/ns/a/tcp/80");
}

TEST(Names, ConnectionCountersAndBack) {
  EXPECT_EQ(ConnCounterName("ns/a/tcp/80"), "conns/ns/a/tcp/80");
  EXPECT_EQ(PortKeyOfConnCounter("conns/ns/a/tcp/80"), "ns/a/tcp/80");
  EXPECT_EQ(PortKeyOfConnCounter("svc4/ns/a/tcp/80"), "");
  EXPECT_EQ(PortKeyOfConnCounter("conn"), "");
  EXPECT_EQ(ServiceKeyOfOwner(ServiceOwner("ns/a")), "ns/a");
  EXPECT_EQ(ServiceKeyOfOwner("chain x"), "");
}

TEST(Names, EndpointCountersAndBack) {
  EXPECT_EQ(EndpointCounterName("ns/a/tcp/80", *IpAddr::Parse("10.0.0.7"), 8080), "epconns/ns/a/tcp/80/10.0.0.7/8080");
  // No ':' in an object name nft prints unquoted.
  EXPECT_EQ(EndpointCounterName("ns/a/udp/53", *IpAddr::Parse("fd00::1"), 53), "epconns/ns/a/udp/53/fd00--1/53");
  std::string key;
  IpAddr addr;
  uint16_t port = 0;
  ASSERT_TRUE(ParseEndpointCounterName("epconns/ns/a/udp/53/fd00--1/53", &key, &addr, &port));
  EXPECT_EQ(key, "ns/a/udp/53");
  EXPECT_EQ(addr, *IpAddr::Parse("fd00::1"));
  EXPECT_EQ(port, 53);
  ASSERT_TRUE(ParseEndpointCounterName("epconns/ns/a/tcp/80/10.0.0.7/8080", &key, &addr, &port));
  EXPECT_EQ(key, "ns/a/tcp/80");
  EXPECT_EQ(addr, *IpAddr::Parse("10.0.0.7"));
  EXPECT_EQ(port, 8080);
  for (const char* bad : {"conns/ns/a/tcp/80", "epconns/10.0.0.7/8080", "epconns/ns/a/tcp/80/10.0.0.7/0",
                          "epconns/ns/a/tcp/80/10.0.0.7/70000", "epconns/ns/a/tcp/80/x/80", "epconns/"}) {
    EXPECT_FALSE(ParseEndpointCounterName(bad, &key, &addr, &port)) << bad;
  }
  EXPECT_EQ(PortKeyOfConnCounter("epconns/ns/a/tcp/80/10.0.0.7/8080"), "");
  EXPECT_EQ(EpConnsMapName(Family::kV6, 3), "epconns6-3");
  absl::string_view ns, service;
  ASSERT_TRUE(ServiceOfCounterName("epconns/shop/web/tcp/80/10.0.0.7/8080", &ns, &service));
  EXPECT_EQ(ns, "shop");
  EXPECT_EQ(service, "web");
  ASSERT_TRUE(ServiceOfCounterName("conns/default/dns/udp/53", &ns, &service));
  EXPECT_EQ(ns, "default");
  EXPECT_EQ(service, "dns");
  for (const char* bad : {"conns/default", "conns//x/tcp/1", "other/a/b/c", "epconns/a//b"}) {
    EXPECT_FALSE(ServiceOfCounterName(bad, &ns, &service)) << bad;
  }
}

TEST(Names, DeleteOrderPutsReferrersFirst) {
  // fw goes to ext, ext to svc/local: each must go before its target.
  EXPECT_EQ(kDeleteOrder[0], ChainKind::kFw);
  EXPECT_EQ(kDeleteOrder[1], ChainKind::kExt);
  EXPECT_EQ(std::size(kDeleteOrder), 4u);
}

}  // namespace
}  // namespace nftproxy::dp
