// The statement IR: every rule nftproxy writes, fixed or per service, is a
// short sequence of statements, and each statement kind has exactly one
// text printer (PrintRule, ir.cc) and one netlink encoder (EncodeRule,
// nft_expr.cc), so `nft list` text and the kernel's rules cannot disagree.
// The fixed part of the table (Skeleton) and the per-shard objects
// (ShardObjects) are data built here; Render and the netlink batch builder
// both iterate them.
//
// A new packet path: a statement kind here (printer in ir.cc, encoder in
// nft_expr.cc), then either a fixed rule in Skeleton/ShardObjects or a
// per-service Rule field lowered in LowerRule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "dataplane/ip.h"
#include "dataplane/model.h"
#include "dataplane/names.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {

enum class StmtKind : uint8_t {
  // Matches.
  kFibSaddrLocal,         // fib saddr type local
  kFibDaddrLocal,         // fib daddr type local
  kSaddrInSet,            // ip saddr @name
  kDaddrInSet,            // ip daddr @name
  kAddrPairInSet,         // ip saddr . ip daddr @name
  kSaddrPrefix,           // ip saddr <cidr>
  kDaddrNotLoopback,      // ip daddr != 127.0.0.0/8 | ip6 daddr != ::1
  kCtStatusDnat,          // ct status dnat
  kCtLabelTest,           // ct label <a>
  kCtOriginalDaddrInSet,  // ct original ip daddr @name
  kMarkBitTest,           // meta mark & <a> == <a>
  kL4ProtoIs,             // meta l4proto <proto>
  kDaddrPrefix,           // ip daddr <cidr> (the trace table's filter)
  kDportIs,               // th dport <a> (the trace table's filter)
  // Lookups whose result is the verdict.
  kFrontendVmap,  // ip daddr . meta l4proto . th dport vmap @name
  kNodePortVmap,  // meta l4proto . th dport vmap @name
  // Actions.
  kSaveMark,        // ct mark set meta mark
  kCounterRef,      // counter name "<name>" (a named counter object)
  kCounterMarkMap,  // counter name meta mark map @name (an endpoint's counter)
  kCtLabelSet,      // ct label set <a>
  kTicketNumgen,    // meta mark set numgen random|inc mod <a> offset <b>
  kTicketJhash,     // meta mark set jhash ip saddr mod <a> seed <c> offset <b>
  kTicketAffinity,  // meta mark set <affinity key> map @name
  kAffinityUpdate,  // update @name { <affinity key> timeout <a>s : meta mark }
  kRestoreMark,     // meta mark set ct mark
  kCtMarkClear,     // ct mark set 0x00000000
  kDnatMarkMap,     // dnat ip to meta mark map @name
  kMasquerade,
  kReject,  // ICMPX port unreachable
  kNftraceSet,  // meta nftrace set 1 (the trace table)
  // Verdicts.
  kGoto,  // goto <name>
  kJump,  // jump <name>
  kDrop,
  kReturn,
};

struct Stmt {
  StmtKind kind = StmtKind::kDrop;
  Family family = Family::kV4;
  // kL4ProtoIs: the protocol; kTicketNumgen: 1 for round robin (inc).
  uint8_t small = 0;
  uint32_t a = 0, b = 0, c = 0;
  // The set, map or chain the statement names; outlives the statement.
  const char* name = nullptr;
  const Cidr* cidr = nullptr;  // kSaddrPrefix, kDaddrPrefix
};

// One rule; inline storage: a full sync lowers ~30,000 service rules.
using RuleStmts = absl::InlinedVector<Stmt, 4>;

// Per-service rules become statements here, for text and netlink alike.
void LowerRule(const Rule& rule, RuleStmts* out);
// Statements as `nft list` prints them, separated by spaces.
void PrintRule(const RuleStmts& rule, std::string* out);

// nft's datatype ids (how `nft list` prints keys and data).
enum class DataType : uint8_t { kNone = 0, kIpv4 = 7, kIpv6 = 8, kInetProto = 12, kInetService = 13, kMark = 19 };

struct SetDef {
  // kBackends: `shard` says which.
  SetId id = SetId::kServiceIps;
  Family family = Family::kV4;
  uint32_t shard = 0;
  std::string name;
  absl::InlinedVector<DataType, 4> key;
  // Maps: the data's types, or verdict.
  bool map = false;
  bool verdict = false;
  absl::InlinedVector<DataType, 2> data;
  bool interval = false;
  bool counters = false;  // an object map to named counters (`: counter`)
  bool dynamic = false;  // updated from the packet path, with timeouts
  uint32_t size = 0;
  // Keys in host byte order (the mark), recorded in the set's userdata so
  // that nft prints ranges right.
  bool host_order_key = false;
};

enum class Hook : uint8_t { kNone, kPrerouting, kOutput, kPostrouting };

struct ChainDef {
  std::string name;
  Hook hook = Hook::kNone;  // base chains only:
  const char* type = "";
  int priority = 0;
  const char* priority_text = "";  // as nft prints it
  std::vector<RuleStmts> rules;
};

// A group of fixed objects, in creation (and listing) order. Not copyable:
// statements point at the names of its sets.
struct FixedObjects {
  FixedObjects() = default;
  FixedObjects(FixedObjects&&) = default;
  FixedObjects(const FixedObjects&) = delete;
  FixedObjects& operator=(const FixedObjects&) = delete;
  std::vector<SetDef> sets;
  std::vector<ChainDef> chains;
};

// Every set, map and base chain with its rules; `node` decides a few rules.
FixedObjects Skeleton(const NodeSettings& node);
// The backends maps (and, with node.endpoint_counters, epconns maps) and
// the pick chains of one shard.
FixedObjects ShardObjects(uint32_t shard, const NodeSettings& node);

// Byte length of a datatype in a key or data (registers are 4 bytes).
uint32_t DataTypeLen(DataType t);
// Concatenated datatype id (6 bits per type), and total length.
uint32_t ConcatType(const DataType* types, size_t n);
uint32_t ConcatLen(const DataType* types, size_t n);
// "ipv4_addr . inet_service"
std::string DataTypeText(const DataType* types, size_t n);

}  // namespace nftproxy::dp
