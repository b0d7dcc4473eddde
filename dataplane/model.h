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

// One destination a new connection may be sent to.
struct Backend {
  IpAddr addr;
  uint16_t port = 0;
  // Relative share of new connections; backends of weight 0 are not listed.
  uint32_t weight = 1;

  friend bool operator==(const Backend& a, const Backend& b) {
    return a.addr == b.addr && a.port == b.port && a.weight == b.weight;
  }
};

// One port of a service with the backends chosen for it (both families mixed;
// each frontend address uses the backends of its own family).
struct ServicePort {
  std::string name;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
  std::vector<Backend> backends;
};

struct Service {
  std::string ns;
  std::string name;
  // Addresses the service answers on (cluster IPs, external and LB IPs).
  std::vector<IpAddr> vips;
  std::vector<ServicePort> ports;
  LbMode lb = LbMode::kRandom;

  std::string Key() const { return ns + "/" + name; }
};

// The whole desired dataplane state. Services are sorted by Key().
struct Model {
  std::vector<Service> services;
};

}  // namespace nftproxy::dp
