// Reads nftproxy's table back from the kernel over netlink (chains with
// their rules, sets, and the elements of every set but the affinity maps),
// so that a new run can adopt the table a previous run left (adopt.h) and
// `explain --kernel` can show what the kernel holds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/dataplane.h"
#include "dataplane/ir.h"
#include "dataplane/netlink_socket.h"

namespace nftproxy::dp {

// One set element as the kernel holds it (wire form).
struct KernelElem {
  std::string key;
  std::string data;   // maps with data
  std::string chain;  // verdict maps: the goto target
  std::string objref;  // object maps: the object's name
  uint32_t verdict = 0;
  bool interval_end = false;
};

// A named counter object's values.
struct CounterValue {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  friend bool operator==(const CounterValue& a, const CounterValue& b) {
    return a.packets == b.packets && a.bytes == b.bytes;
  }
};
using KernelCounters = std::map<std::string, CounterValue>;

struct KernelTable {
  bool exists = false;
  // Every chain with its rules, each rule as RuleText gives it.
  std::map<std::string, std::vector<std::string>> chains;
  // Per chain: the offset of its first `numgen` or `jhash` (a ticket base).
  std::map<std::string, uint32_t> ticket_bases;
  std::set<std::string> sets;
  // Elements per set (affinity maps left out: they are the packet path's).
  std::map<std::string, std::vector<KernelElem>> elements;
  // Named counter objects by name.
  KernelCounters counters;
};

// The table `inet <table>` as four dumps (chains, rules, sets, elements) of
// one ruleset generation: if the table changes between them, it is read
// again (at most a few times, then Aborted).
absl::StatusOr<KernelTable> ReadTable(NetlinkSocket& socket, uint32_t* seq, const std::string& table);

// The counter objects `names` of table `inet <table>`, each asked for by
// name (200 requests per sendmsg): linear, where a dump of many objects is
// not (Linux 6.18 walks the object list from its start for every part of a
// dump). A name the table does not hold (any more) is left out. With
// `gen`, every answer must be of that ruleset generation (the first one
// sets it), else Aborted.
absl::StatusOr<KernelCounters> ReadCountersByName(NetlinkSocket& socket, uint32_t* seq, const std::string& table,
                                                  const std::vector<std::string>& names,
                                                  std::optional<uint16_t>* gen = nullptr);

// ReadTable dumps the counter objects when its table refers to at most this
// many, and asks for them by name beyond.
inline constexpr size_t kCounterDumpMax = 20000;

// The service ports' connection counters among `counters` (others are left
// out), sorted by namespace, service, protocol and port.
std::vector<PortConnections> ConnectionsOf(const KernelCounters& counters);

// A rule as comparable text: its expressions in libnftnl's notation, after
// a round trip through the netlink encoding (the form ReadTable gives).
std::string RuleText(const RuleStmts& rule);

}  // namespace nftproxy::dp
