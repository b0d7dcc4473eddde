// Packet tracing (`nftproxy trace`): a temporary table of nftproxy's own
// that sets `meta nftrace` on the packets of one flow, a listener in the
// nf_tables trace group (NFNLGRP_NFTRACE), and the decoder that turns the
// kernel's NFT_MSG_TRACE messages into the words of nftproxy's ruleset:
// which frontend matched (the per-service chain names the service), which
// ticket was written and which endpoint it DNATed to, whether the packet
// was masqueraded, dropped or rejected, and by which rule.
//
// The trace rule lives in a table of its own, "<table>-trace" (marked with
// nftproxy's comment), never in nftproxy's main table: full commits replace
// the main table whole, adoption and `explain --kernel` compare it with the
// installed model, and the drift monitor reacts to any change to it. A
// separate table is invisible to all three (the drift monitor reads the
// table name of every notification and ignores other tables). Base chains
// at priority -300 (raw) in prerouting and output see packets before
// nftproxy's chains (dstnat, -100), so the trace covers all of them.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dataplane/ip.h"
#include "dataplane/model.h"
#include "dataplane/ruleset.h"

struct nlmsghdr;

namespace nftproxy::dp {

// The flow to trace: packets from `src` to `dst` (a VIP, an external or LB
// IP, or a node address for a node port), protocol and destination port.
struct TraceFilter {
  IpAddr src;
  IpAddr dst;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
};

// "<table>-trace".
std::string TraceTableName(const std::string& table);
// Chains of the trace table.
inline constexpr char kTracePreroutingChain[] = "trace-prerouting";
inline constexpr char kTraceOutputChain[] = "trace-output";
inline constexpr int kTracePriority = -300;  // raw: before conntrack and nat

// The trace table as nft text (for logs and tests).
std::string TraceTableText(const std::string& table, const TraceFilter& f);
// Replaces the trace table (one batch: add, delete, add with the two chains
// and their rules). Src and dst must be of one family.
absl::Status InstallTraceTable(const std::string& table, const TraceFilter& f);
// Deletes the trace table; none is no error.
absl::Status RemoveTraceTable(const std::string& table);

// One NFT_MSG_TRACE message, its attributes as the kernel sent them.
struct TraceAttrs {
  uint32_t id = 0;    // NFTA_TRACE_ID: the same for all events of one packet
  uint32_t type = 0;  // NFT_TRACETYPE_RULE, _RETURN or _POLICY
  uint8_t family = 0;  // nfgen_family of the message (NFPROTO_INET for our tables)
  std::string table, chain;
  uint64_t rule_handle = 0;
  bool has_verdict = false;
  int32_t verdict = 0;       // NF_ACCEPT, NF_DROP, NFT_JUMP, NFT_GOTO, NFT_RETURN, NFT_CONTINUE
  std::string verdict_chain;  // jump / goto target
  uint32_t policy = 0;        // NFTA_TRACE_POLICY (type policy)
  bool has_mark = false;
  uint32_t mark = 0;
  uint32_t nfproto = 0;  // NFPROTO_IPV4 / NFPROTO_IPV6
  std::string network_header, transport_header;
};
// The attributes of one message; nullopt when it is not an NFT_MSG_TRACE.
std::optional<TraceAttrs> ParseTraceMessage(const nlmsghdr* nlh);

// What the decoder needs to name things, copied from what the dataplane
// installed (NftDataplane::TraceNames).
struct TraceNames {
  std::string table;                          // nftproxy's table, e.g. "nftproxy"
  std::map<uint32_t, Interval> backends[2];   // [0] v4, [1] v6, by first ticket
  std::map<uint32_t, std::string> port_keys;  // service-port index -> "ns/name/proto/port"
  // An endpoint address of a service -> a name to show (the server fills
  // it in from the EndpointSlices; may be empty).
  std::map<std::string, std::string> endpoint_names;  // key: "ns/name addr"
};

// One packet's way through one of nftproxy's base chains (one hook), ended
// by a verdict.
struct TraceStep {
  uint32_t id = 0;
  std::string packet;  // "tcp 198.18.1.2:40000 -> 198.19.0.10:80"
  std::string hook;    // the base chain: prerouting, output, postrouting, ...
  std::vector<std::string> path;  // decoded words, in order
  std::string service;            // "ns/name", when a frontend matched
  std::string service_port;       // "ns/name/proto/port"
  std::string endpoint;           // "addr:port" chosen by the DNAT
  std::string endpoint_name;
  uint32_t ticket = 0;
  bool masquerade = false;
  // accept, dnat, drop, reject, masquerade
  std::string verdict;
  // nftproxy's table | another table's chain that decided
  std::string decided_by;  // "chain pick4-0 rule 12"

  // "tcp 198.18.1.2:40000 -> 198.19.0.10:80  prerouting: ... -> dnat 198.18.10.2:8080 -> accepted"
  std::string Line() const;
};

// Turns trace messages into steps. Keeps per-packet state for at most
// kMaxPackets packets (the oldest is forgotten first).
class TraceDecoder {
 public:
  static constexpr size_t kMaxPackets = 1024;
  explicit TraceDecoder(TraceNames names) : names_(std::move(names)) {}
  // A step when `a` ends a traversal of one of nftproxy's base chains (or a
  // drop in another table); nullopt otherwise. Traversals of the trace
  // table and of mark-restore ending in accept are not reported.
  std::optional<TraceStep> Add(const TraceAttrs& a);
  const TraceNames& names() const { return names_; }

 private:
  std::string Describe(const TraceAttrs& a, TraceStep* step);
  TraceNames names_;
  std::map<uint32_t, TraceStep> open_;  // by id (and hook: one open traversal per packet)
  std::map<uint32_t, std::string> packets_;  // id -> packet text (headers come once per hook)
  std::deque<uint32_t> order_;
};

// The listener: a socket in NFNLGRP_NFTRACE.
class TraceListener {
 public:
  static absl::StatusOr<std::unique_ptr<TraceListener>> Open();
  ~TraceListener();
  TraceListener(const TraceListener&) = delete;
  TraceListener& operator=(const TraceListener&) = delete;
  // Waits up to `wait` for messages and returns those that arrived (empty
  // on timeout). An overrun (ENOBUFS) is reported in *lost.
  std::vector<TraceAttrs> Read(absl::Duration wait, bool* lost);

 private:
  explicit TraceListener(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace nftproxy::dp
