// Deletes conntrack entries that still send a flow to an endpoint that is
// gone. TCP notices a dead peer by itself; a UDP client keeps sending into
// its old (DNATed) flow until the entry times out, so nftproxy deletes the
// entries of removed UDP endpoints right after the ruleset change commits.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/ip.h"

namespace nftproxy::dp {

struct FlowTarget {
  IpAddr addr;
  uint16_t port = 0;

  friend bool operator<(const FlowTarget& a, const FlowTarget& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.port < b.port;
  }
  friend bool operator==(const FlowTarget& a, const FlowTarget& b) {
    return a.addr == b.addr && a.port == b.port;
  }
};

// Deletes DNATed UDP conntrack entries whose reply comes from one of
// `targets` (addr:port after DNAT). Returns how many entries went.
absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets);

// What NftDataplane needs of conntrack; tests inject a fake.
class FlowFlusher {
 public:
  virtual ~FlowFlusher() = default;
  virtual absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) = 0;
};

// The real one (ctnetlink, conntrack.cc).
class ConntrackFlusher final : public FlowFlusher {
 public:
  absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) override {
    return dp::DeleteUdpFlowsTo(targets);
  }
};

}  // namespace nftproxy::dp
