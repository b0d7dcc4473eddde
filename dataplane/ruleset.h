// The ruleset IR: exactly the nftables objects nftproxy owns, as values.
// The compiler produces it from a Model; the writer diffs two of them into
// one netlink batch; Render() prints it as `nft -f` text.
//
// Shape (see ARCHITECTURE.md for why):
//   table inet <name>
//     map service-ips4 / service-ips6:  daddr . l4proto . dport -> goto svcN/...
//     chain prerouting, output (nat, dstnat): jump services
//     chain services: one vmap lookup per family
//     chain svc4/<ns>/<name>/<proto>/<port>: one dnat rule per backend, each
//       taking its share of the remaining weight, the last unconditional.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dataplane/ip.h"
#include "dataplane/model.h"

namespace nftproxy::dp {

inline constexpr char kServiceMap4[] = "service-ips4";
inline constexpr char kServiceMap6[] = "service-ips6";
inline constexpr char kServicesChain[] = "services";
inline constexpr char kPreroutingChain[] = "prerouting";
inline constexpr char kOutputChain[] = "output";

// How a backend rule decides whether it takes the connection.
enum class Pick : uint8_t {
  kAlways,      // the last backend: unconditional
  kRandom,      // numgen random mod `modulus` < `below`
  kRoundRobin,  // numgen inc mod `modulus` < `below`
  kSourceHash,  // jhash <saddr> mod `modulus` seed `seed` < `below`
};

struct DnatRule {
  L4Proto proto = L4Proto::kTcp;
  Pick pick = Pick::kAlways;
  uint32_t modulus = 0;
  uint32_t below = 0;
  uint32_t seed = 0;
  IpAddr addr;  // its family is the rule's family
  uint16_t port = 0;

  friend bool operator==(const DnatRule& a, const DnatRule& b) {
    return a.proto == b.proto && a.pick == b.pick && a.modulus == b.modulus &&
           a.below == b.below && a.seed == b.seed && a.addr == b.addr && a.port == b.port;
  }
};

struct Chain {
  std::string owner;  // "service ns/name", for error messages
  std::vector<DnatRule> rules;

  friend bool operator==(const Chain& a, const Chain& b) {
    return a.owner == b.owner && a.rules == b.rules;
  }
};

struct VmapKey {
  IpAddr addr;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;

  friend bool operator<(const VmapKey& a, const VmapKey& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    if (a.proto != b.proto) return a.proto < b.proto;
    return a.port < b.port;
  }
  friend bool operator==(const VmapKey& a, const VmapKey& b) {
    return a.addr == b.addr && a.proto == b.proto && a.port == b.port;
  }
};

struct VmapTarget {
  std::string chain;
  std::string owner;

  friend bool operator==(const VmapTarget& a, const VmapTarget& b) {
    return a.chain == b.chain && a.owner == b.owner;
  }
};

struct Ruleset {
  std::string table;                      // name of the inet table
  std::map<std::string, Chain> chains;    // service chains by name
  std::map<VmapKey, VmapTarget> vmap;     // service-ips4 and service-ips6 elements

  friend bool operator==(const Ruleset& a, const Ruleset& b) {
    return a.table == b.table && a.chains == b.chains && a.vmap == b.vmap;
  }
};

// Model -> IR. Deterministic: equal models give equal rulesets.
Ruleset Compile(const Model& model, const std::string& table);

// IR -> `nft -f` text, in the layout `nft list table` uses.
std::string Render(const Ruleset& rs);

// Name of the chain of one service port and family.
std::string ServiceChainName(const Service& svc, const ServicePort& port, Family family);

}  // namespace nftproxy::dp
