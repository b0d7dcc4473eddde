// Validation of API resources. Every error is INVALID_ARGUMENT and names the
// object and the field: `service default/web: spec.ports[1].port: ...`.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "server/desired.h"
#include "server/state_store.h"

namespace nftproxy::server {

// Checks one resource on its own (names, addresses, ports, enums).
absl::Status ValidateResource(const v1::Resource& r);

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
