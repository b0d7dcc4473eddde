// The ruleset: exactly the nftables objects nftproxy owns, as values.
// The compiler (compile.cc) produces it from a Model; Diff gives what
// changed; the writer (nft_writer.h) turns a ruleset or a difference into
// one netlink batch; Render() (render.cc) prints it as `nft -f` text. Both
// go through the statement IR of ir.h.
//
// Shape (ARCHITECTURE.md explains why): a new connection to a frontend is
// dispatched by one verdict-map lookup to a constant per-service chain. That
// chain writes a "ticket" into the packet mark (bit 31 set, bit 30 for the
// node-local endpoint set, bits 12-29 the service port's index, bits 0-11 a
// random, round-robin or hashed bucket) and jumps to a shared pick chain
// whose one rule per protocol DNATs through an interval map from ticket
// ranges to endpoints. Endpoint changes therefore only add and remove map
// elements: no rule changes, so the kernel never re-validates the table.
// The original mark is kept in the conntrack mark meanwhile and restored
// at priority dstnat+1.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "dataplane/ip.h"
#include "dataplane/model.h"
#include "dataplane/names.h"

namespace nftproxy::dp {

// Ticket layout in the packet mark.
inline constexpr uint32_t kTicketBit = 0x80000000u;
inline constexpr uint32_t kLocalBit = 0x40000000u;
inline constexpr int kIndexShift = 12;
inline constexpr uint32_t kBuckets = 1u << kIndexShift;  // 4096 per service port
inline constexpr uint32_t kMaxIndex = (1u << 18) - 2;    // 262,142 service ports
// Service ports per backends map (256): each map's commit cost is linear in
// its own size (Linux 6.18 walks an interval map's whole tree to rebuild its
// lookup array on every commit that touches it). At 10,000 services x 10
// endpoints, 256 instead of 1,024 cut one endpoint change from 0.70 to
// 0.34 ms (p50) and 4.2 to 1.1 ms (p99) in-process; more maps cost little.
inline constexpr int kShardShift = 8;
// The conntrack label bit that asks postrouting to masquerade.
inline constexpr int kMasqueradeLabel = 127;

// Rules of per-service chains: the compact, diffable value; LowerRule
// (ir.h) turns one into the statements that are printed and encoded. The
// skeleton's rules are statements from the start (Skeleton in ir.h).
struct Rule {
  enum class Match : uint8_t {
    kAny,
    kLocalSource,    // fib saddr type local
    kClusterSource,  // ip saddr @cluster-cidrs4
    kSourcePrefix,   // ip saddr <prefix>
  };
  enum class Ticket : uint8_t {
    kNone,
    kRandom,      // numgen random mod <modulus> offset <offset>
    kRoundRobin,  // numgen inc mod <modulus> offset <offset>
    kSourceHash,  // jhash ip saddr mod <modulus> seed <seed> offset <offset>
    kAffinity,    // the ticket this client got last time (map lookup)
  };
  enum class Verdict : uint8_t { kNone, kGoto, kDrop };

  Family family = Family::kV4;
  Match match = Match::kAny;
  Cidr prefix;
  bool save_mark = false;   // ct mark set meta mark (before writing a ticket)
  std::string counter;      // counter name "<counter>" (a named counter object), after save_mark
  bool masquerade = false;  // ct label set 127
  Ticket ticket = Ticket::kNone;
  uint32_t modulus = 0;
  uint32_t offset = 0;
  uint32_t seed = 0;
  uint32_t affinity_timeout_s = 0;  // > 0: remember the ticket for this long
  Verdict verdict = Verdict::kNone;
  std::string target;

  friend bool operator==(const Rule& a, const Rule& b) {
    return a.family == b.family && a.match == b.match && a.prefix == b.prefix &&
           a.save_mark == b.save_mark && a.counter == b.counter && a.masquerade == b.masquerade && a.ticket == b.ticket &&
           a.modulus == b.modulus && a.offset == b.offset && a.seed == b.seed &&
           a.affinity_timeout_s == b.affinity_timeout_s && a.verdict == b.verdict &&
           a.target == b.target;
  }
};

struct Chain {
  ChainKind kind = ChainKind::kSvc;  // as in its name
  std::string owner;  // "service ns/name", for error messages
  std::vector<Rule> rules;

  friend bool operator==(const Chain& a, const Chain& b) {
    return a.kind == b.kind && a.owner == b.owner && a.rules == b.rules;
  }
};

// Key of the service-ips4/6 verdict maps.
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

// Key of the nodeports4/6 verdict maps.
struct NodePortKey {
  Family family = Family::kV4;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;

  friend bool operator<(const NodePortKey& a, const NodePortKey& b) {
    if (a.family != b.family) return a.family < b.family;
    if (a.proto != b.proto) return a.proto < b.proto;
    return a.port < b.port;
  }
  friend bool operator==(const NodePortKey& a, const NodePortKey& b) {
    return a.family == b.family && a.proto == b.proto && a.port == b.port;
  }
};

struct VmapTarget {
  std::string chain;
  std::string owner;

  friend bool operator==(const VmapTarget& a, const VmapTarget& b) {
    return a.chain == b.chain && a.owner == b.owner;
  }
};

// One element of a backends map: tickets [first, last] go to addr:port.
// With endpoint counters, the same interval of the shard's epconns map
// names the endpoint's counter object (EndpointCounterName).
struct Interval {
  uint32_t last = 0;
  IpAddr addr;
  uint16_t port = 0;
  std::string counter;  // "" without endpoint counters

  friend bool operator==(const Interval& a, const Interval& b) {
    return a.last == b.last && a.addr == b.addr && a.port == b.port && a.counter == b.counter;
  }
};

struct Ruleset {
  std::string table;  // name of the inet table
  NodeSettings node;  // shapes the skeleton; a change replaces the table
  // Backends maps and pick chains exist for shards [0, shards).
  uint32_t shards = 0;
  std::map<std::string, Chain> chains;            // per-service chains by name
  std::map<VmapKey, VmapTarget> vmap;             // service-ips4 / service-ips6
  std::map<NodePortKey, VmapTarget> nodeports;    // nodeports4 / nodeports6
  // Set elements with how many service ports refer to each: an element
  // stays while any does (services may share an address).
  std::map<IpAddr, uint32_t> cluster_ips;         // cluster-ips4 / cluster-ips6
  std::map<IpAddr, uint32_t> hairpin;             // hairpin4 / hairpin6 (as a . a)
  std::map<uint32_t, Interval> backends[2];       // [0] v4, [1] v6; key: first ticket
  // Named counter objects (node.counters; per endpoint too with
  // node.endpoint_counters): name -> owner. Created before the
  // rules that name them, deleted after; never replaced, so their values
  // live as long as their service port.
  std::map<std::string, std::string> counters;
  // Stable service-port indexes: "ns/name/proto/port" -> index.
  std::map<std::string, uint32_t> indexes;

  friend bool operator==(const Ruleset& a, const Ruleset& b) {
    return a.table == b.table && SameNode(a.node, b.node) && a.shards == b.shards &&
           a.chains == b.chains && a.vmap == b.vmap && a.nodeports == b.nodeports &&
           a.cluster_ips == b.cluster_ips && a.hairpin == b.hairpin &&
           a.backends[0] == b.backends[0] && a.backends[1] == b.backends[1] &&
           a.counters == b.counters && a.indexes == b.indexes;
  }
  static bool SameNode(const NodeSettings& a, const NodeSettings& b) {
    return a.cluster_cidrs == b.cluster_cidrs && a.nodeport_cidrs == b.nodeport_cidrs &&
           a.counters == b.counters && a.endpoint_counters == b.endpoint_counters;
  }
};

using IndexMap = std::map<std::string, uint32_t>;

// The node settings as the table holds them: each CIDR as its network
// address, sorted, each range of addresses once: a CIDR equal to or inside
// another one is left out (its addresses are in the set already, and the
// kernel refuses an interval that overlaps one in the set: EEXIST).
NodeSettings NormalizedNode(const NodeSettings& node);

// Model -> IR. Deterministic. Service ports listed in `indexes` keep those
// indexes (so unchanged services compile to unchanged objects); new ones
// take the lowest free index. At least `min_shards` shards exist (backends
// maps are never removed).
Ruleset Compile(const Model& model, const std::string& table, const IndexMap* indexes = nullptr,
                uint32_t min_shards = 0);
// The same, keeping the indexes and shards of `prev`.
inline Ruleset Compile(const Model& model, const std::string& table, const Ruleset* prev) {
  return Compile(model, table, prev ? &prev->indexes : nullptr, prev ? prev->shards : 0);
}

// The keys ("ns/name/proto/port") of the service's ports that get objects,
// each of which needs an index before CompileService.
std::vector<std::string> IndexKeys(const Service& svc);
// Adds the objects of one service to `out` (a whole ruleset or a fragment
// holding one service). `indexes` must hold every IndexKeys(svc) entry;
// those entries are copied into out->indexes. With out->node.counters, each
// service port gets its connection counter.
void CompileService(const Service& svc, const IndexMap& indexes, Ruleset* out);

// What turns `from` into `to`, per object, added to *removed (objects that
// go away or change, with their old value) and *added (new or changed, with
// the new value): chains, verdict-map and backends elements, counter
// objects, and shards
// (added->shards becomes at least to.shards). The address sets and their
// reference counts are left to the caller.
void Diff(const Ruleset& from, const Ruleset& to, Ruleset* removed, Ruleset* added);

// IR -> `nft -f` text, in the layout `nft list table` uses (render.cc).
std::string Render(const Ruleset& rs);
// The same in pieces of about `piece` bytes (whole lines), until the text
// ends or `sink` returns false.
void RenderTo(const Ruleset& rs, size_t piece, const std::function<bool(absl::string_view)>& sink);

// The shard of a ticket (its service port's index / 256).
inline uint32_t ShardOfTicket(uint32_t ticket) {
  return ((ticket & ~(kTicketBit | kLocalBit)) >> kIndexShift) >> kShardShift;
}

// The service's owner string for errors, from an index ("service ns/name"),
// or kUnknownOwner when `rs` has no such index.
inline constexpr char kUnknownOwner[] = "a service";
std::string OwnerOfTicket(const Ruleset& rs, uint32_t ticket);
// Splits backends into ticket ranges proportional to weight (exposed for tests).
std::vector<uint32_t> BucketShares(const std::vector<uint32_t>& weights, uint32_t buckets);

}  // namespace nftproxy::dp
