// The dataplane's domain model: what should be reachable, in plain C++ types.
// The server builds it from the API resources; the compiler turns it into a
// ruleset. Nothing here knows about protobuf or netlink.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/ip.h"

namespace nftproxy::dp {

enum class L4Proto : uint8_t { kTcp = 6, kUdp = 17, kSctp = 132 };

const char* L4ProtoName(L4Proto p);  // "tcp", "udp", "sctp"

enum class LbMode : uint8_t { kRandom, kRoundRobin, kSourceHash };

// CLUSTER: any endpoint. LOCAL: only endpoints on this node.
enum class Policy : uint8_t { kCluster, kLocal };

// One destination a new connection may be sent to.
struct Backend {
  IpAddr addr;
  uint16_t port = 0;
  // Relative share of new connections; backends of weight 0 are not listed.
  uint32_t weight = 1;
  // The endpoint runs on this node (for LOCAL traffic policies).
  bool local = false;

  friend bool operator==(const Backend& a, const Backend& b) {
    return a.addr == b.addr && a.port == b.port && a.weight == b.weight && a.local == b.local;
  }
};

// One port of a service with the backends chosen for it (both families mixed;
// each frontend address uses the backends of its own family).
struct ServicePort {
  std::string name;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
  // 0: no NodePort.
  uint16_t node_port = 0;
  std::vector<Backend> backends;

  friend bool operator==(const ServicePort& a, const ServicePort& b) {
    return a.name == b.name && a.proto == b.proto && a.port == b.port && a.node_port == b.node_port &&
           a.backends == b.backends;
  }
};

struct Service {
  std::string ns;
  std::string name;
  // Internal frontends (internal traffic policy applies).
  std::vector<IpAddr> cluster_ips;
  // External frontends (external traffic policy applies), with node ports.
  std::vector<IpAddr> external_ips;
  std::vector<IpAddr> lb_ips;
  // Sources allowed to reach lb_ips; empty: everyone.
  std::vector<Cidr> lb_source_ranges;
  std::vector<ServicePort> ports;
  LbMode lb = LbMode::kRandom;
  Policy external_policy = Policy::kCluster;
  Policy internal_policy = Policy::kCluster;
  // CLIENT_IP session affinity timeout in seconds; 0: no affinity.
  uint32_t affinity_timeout_s = 0;

  std::string Key() const { return ns + "/" + name; }

  friend bool operator==(const Service& a, const Service& b) {
    return a.ns == b.ns && a.name == b.name && a.cluster_ips == b.cluster_ips && a.external_ips == b.external_ips &&
           a.lb_ips == b.lb_ips && a.lb_source_ranges == b.lb_source_ranges && a.ports == b.ports && a.lb == b.lb &&
           a.external_policy == b.external_policy && a.internal_policy == b.internal_policy &&
           a.affinity_timeout_s == b.affinity_timeout_s;
  }
  friend bool operator!=(const Service& a, const Service& b) { return !(a == b); }
};

// Node-wide settings that shape the ruleset.
struct NodeSettings {
  // Sources inside are cluster-internal (pods): not masqueraded, and
  // cluster IPs masquerade only sources outside them (when any is set).
  std::vector<Cidr> cluster_cidrs;
  // Destinations that accept NodePort traffic; empty: every local address
  // except loopback.
  std::vector<Cidr> nodeport_cidrs;
  // A named counter object per service port counts its new connections
  // (serve --kernel-counters).
  bool counters = false;
  // With `counters`: a named counter object per endpoint of each service
  // port counts the new connections sent to it (serve --endpoint-counters).
  bool endpoint_counters = false;
};

// The whole desired dataplane state. Services are sorted by Key().
struct Model {
  NodeSettings node;
  std::vector<Service> services;
};

}  // namespace nftproxy::dp
