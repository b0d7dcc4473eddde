// Validation of API resources. Every error is INVALID_ARGUMENT and names the
// object and the field: `service default/web: spec.ports[1].port: ...`.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/ip.h"
#include "server/desired.h"
#include "server/state_store.h"

namespace nftproxy::server {

// How much one resource may hold, so that no request can make the server do
// work or hold memory out of proportion (`serve --max-*` flags). Counts are
// checked before anything else about the resource. The defaults fit any
// real service and 100,000 services in one Sync.
struct ResourceLimits {
  uint32_t ports_per_service = 256;
  // externalIps, loadBalancerIps and loadBalancerSourceRanges, each.
  uint32_t addresses_per_service = 256;
  // Kubernetes caps an EndpointSlice at 1,000 endpoints.
  uint32_t endpoints_per_slice = 1000;
  uint32_t ports_per_slice = 256;
  uint32_t labels_per_object = 64;
};

// Checks one resource on its own (limits, names, addresses, ports, enums).
// Addresses a proxy cannot use are refused wherever traffic is sent to or
// from them (cluster, external and LB IPs, endpoints): loopback,
// unspecified, multicast, broadcast and IPv4-mapped IPv6. An external or LB
// IP may be one of the node's own addresses: that is how a service is
// exposed on a node address without a node port.
absl::Status ValidateResource(const v1::Resource& r, const ResourceLimits& limits = {});
// Why `ip` cannot be a service or endpoint address ("" if it can).
std::string UnusableAddress(const dp::IpAddr& ip);

// Checks the relations between resources of a whole state: address/port
// clashes between services, selector services that also own slices.
// `changed` lists the keys the current request touched, so that the error
// names the object the caller just wrote rather than its old neighbour.
struct StateRules {
  // Allowed node ports, inclusive (server flag --nodeport-range).
  uint32_t node_port_min = 30000;
  uint32_t node_port_max = 32767;
};
// Checks the resources named in `changed` against the rest of `d` (the
// state before the write was valid, so only they can clash).
absl::Status ValidateChange(const Desired& d, const std::vector<Key>& changed, const StateRules& rules = {});
// The same over a plain State (builds the indexes first; for tests).
absl::Status ValidateState(const State& state, const std::vector<Key>& changed, const StateRules& rules = {});

}  // namespace nftproxy::server
