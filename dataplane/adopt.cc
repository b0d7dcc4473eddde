#include "dataplane/adopt.h"

#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/parallel.h"
#include "dataplane/ir.h"
#include "dataplane/names.h"
#include "dataplane/nft_elements.h"

namespace nftproxy::dp {
namespace {

absl::Status Refuse(const std::string& why) { return absl::FailedPreconditionError(why); }

std::vector<std::string> Texts(const std::vector<RuleStmts>& rules) {
  std::vector<std::string> out;
  out.reserve(rules.size());
  for (const RuleStmts& r : rules) out.push_back(RuleText(r));
  return out;
}

// "" when the rules are the same, else where they first differ.
std::string FirstDifference(const std::vector<std::string>& kernel, const std::vector<std::string>& ours) {
  for (size_t i = 0; i < std::max(kernel.size(), ours.size()); ++i) {
    const std::string k = i < kernel.size() ? kernel[i] : "(none)";
    const std::string o = i < ours.size() ? ours[i] : "(none)";
    if (k != o) return absl::StrCat("rule ", i + 1, ": the kernel has ", k, ", nftproxy writes ", o);
  }
  return "";
}

std::vector<std::string> ChainTexts(const Chain& chain) {
  std::vector<std::string> out;
  RuleStmts stmts;
  for (const Rule& rule : chain.rules) {
    stmts.clear();
    LowerRule(rule, &stmts);
    out.push_back(RuleText(stmts));
  }
  return out;
}

void CompareChain(const std::string& name, const std::map<std::string, std::vector<std::string>>& kernel,
                  const std::vector<std::string>& want, std::vector<std::string>* out) {
  auto it = kernel.find(name);
  if (it == kernel.end()) {
    out->push_back(absl::StrCat("chain ", name, ": missing in the kernel"));
  } else if (std::string d = FirstDifference(it->second, want); !d.empty()) {
    out->push_back(absl::StrCat("chain ", name, ": ", d));
  }
}

uint32_t Be32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint16_t Be16(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + at);
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

bool Addr(const std::string& s, size_t at, Family f, IpAddr* out) {
  const size_t n = f == Family::kV4 ? 4 : 16;
  if (s.size() < at + n) return false;
  out->family = f;
  memcpy(out->bytes.data(), s.data() + at, n);
  return true;
}

bool Proto(uint8_t b, L4Proto* out) {
  if (b != static_cast<uint8_t>(L4Proto::kTcp) && b != static_cast<uint8_t>(L4Proto::kUdp) &&
      b != static_cast<uint8_t>(L4Proto::kSctp)) {
    return false;
  }
  *out = static_cast<L4Proto>(b);
  return true;
}

// "service ns/name" from a per-service chain's name, or "".
// "service ns/name" of a port key "ns/name/proto/port".
std::string OwnerOfPortKey(const std::string& port_key) {
  const size_t second = port_key.find('/', port_key.find('/') + 1);
  return ServiceOwner(port_key.substr(0, second));
}

std::string OwnerOfChain(const std::string& chain, ChainKind* kind = nullptr) {
  ChainKind k;
  Family f;
  std::string port_key;
  if (!ParseServiceChainName(chain, &k, &f, &port_key)) return "";
  if (kind != nullptr) *kind = k;
  return OwnerOfPortKey(port_key);
}

// The kernel's counter objects into rs->counters (their values are not
// compared: a kept counter keeps counting). FailedPrecondition for an
// object nftproxy does not make.
absl::Status DecodeCounters(const KernelTable& k, Ruleset* rs) {
  for (const auto& [name, value] : k.counters) {
    std::string port_key = PortKeyOfConnCounter(name);
    IpAddr addr;
    uint16_t port = 0;
    if (port_key.empty() && !ParseEndpointCounterName(name, &port_key, &addr, &port)) {
      return Refuse(absl::StrCat("counter ", name, " is not nftproxy's"));
    }
    rs->counters.emplace(name, OwnerOfPortKey(port_key));
  }
  return absl::OkStatus();
}

const std::vector<KernelElem>& ElemsOf(const KernelTable& k, const std::string& set) {
  static const std::vector<KernelElem> kNone;
  auto it = k.elements.find(set);
  return it == k.elements.end() ? kNone : it->second;
}

// Elements in a comparable form, for the fixed sets.
std::multiset<std::string> Canonical(const std::vector<KernelElem>& elems) {
  std::multiset<std::string> out;
  for (const KernelElem& e : elems) out.insert(absl::StrCat(e.interval_end ? "E" : "S", e.key));
  return out;
}
std::multiset<std::string> Canonical(const ElemList& list) {
  std::multiset<std::string> out;
  for (const Elem& e : list.elems) {
    out.insert(absl::StrCat(e.interval_end ? "E" : "S",
                            absl::string_view(reinterpret_cast<const char*>(e.key.data()), e.key_len)));
  }
  return out;
}

// The elements of the ticket interval map `name`: start elements by their
// first ticket, and the tickets where intervals end.
absl::Status TicketIntervals(const KernelTable& k, const std::string& name, std::map<uint32_t, const KernelElem*>* starts,
                             std::set<uint32_t>* ends) {
  for (const KernelElem& e : ElemsOf(k, name)) {
    if (e.key.size() != 4) return Refuse(absl::StrCat("an element of ", name, " is not a ticket"));
    if (e.interval_end) {
      ends->insert(Be32(e.key, 0));
    } else {
      (*starts)[Be32(e.key, 0)] = &e;
    }
  }
  return absl::OkStatus();
}

// The elements of the kernel's maps and sets into *rs.
absl::Status DecodeElements(const KernelTable& k, uint32_t shards, Ruleset* rs) {
  for (Family f : {Family::kV4, Family::kV6}) {
    const size_t al = f == Family::kV4 ? 4 : 16;
    const std::string& vmap_name = SetName(SetId::kServiceIps, f);
    for (const KernelElem& e : ElemsOf(k, vmap_name)) {
      VmapKey key;
      if (e.key.size() != al + 8 || !Addr(e.key, 0, f, &key.addr) || !Proto(e.key[al], &key.proto) ||
          e.verdict != static_cast<uint32_t>(NFT_GOTO) || e.chain.empty()) {
        return Refuse(absl::StrCat("an element of ", vmap_name, " is not one nftproxy writes"));
      }
      key.port = Be16(e.key, al + 4);
      rs->vmap[key] = VmapTarget{e.chain, OwnerOfChain(e.chain)};
    }
    const std::string& np_name = SetName(SetId::kNodePorts, f);
    for (const KernelElem& e : ElemsOf(k, np_name)) {
      NodePortKey key;
      key.family = f;
      if (e.key.size() != 8 || !Proto(e.key[0], &key.proto) || e.verdict != static_cast<uint32_t>(NFT_GOTO) ||
          e.chain.empty()) {
        return Refuse(absl::StrCat("an element of ", np_name, " is not one nftproxy writes"));
      }
      key.port = Be16(e.key, 4);
      rs->nodeports[key] = VmapTarget{e.chain, OwnerOfChain(e.chain)};
    }
    for (const KernelElem& e : ElemsOf(k, SetName(SetId::kClusterIps, f))) {
      IpAddr a;
      if (e.key.size() != al || !Addr(e.key, 0, f, &a)) return Refuse("an element of cluster-ips is not an address");
      rs->cluster_ips[a] = 1;
    }
    for (const KernelElem& e : ElemsOf(k, SetName(SetId::kHairpin, f))) {
      IpAddr a;
      if (e.key.size() != 2 * al || !Addr(e.key, 0, f, &a)) return Refuse("an element of hairpin is not a pair");
      rs->hairpin[a] = 1;
    }
    // Interval maps: start elements carry the endpoint; an interval ends
    // where the next end element is.
    for (uint32_t shard = 0; shard < shards; ++shard) {
      const std::string name = BackendsMapName(f, shard);
      std::map<uint32_t, const KernelElem*> starts;
      std::set<uint32_t> ends;
      if (absl::Status s = TicketIntervals(k, name, &starts, &ends); !s.ok()) return s;
      for (const auto& [first, e] : starts) {
        auto end = ends.upper_bound(first);
        Interval iv;
        if (end == ends.end() || e->data.size() != al + 4 || !Addr(e->data, 0, f, &iv.addr) ||
            ShardOfTicket(first) != shard) {
          return Refuse(absl::StrCat("an interval of ", name, " is not one nftproxy writes"));
        }
        iv.last = *end - 1;
        iv.port = Be16(e->data, al);
        rs->backends[f == Family::kV4 ? 0 : 1][first] = iv;
      }
      // Endpoint counters: the same intervals, each naming its counter.
      const std::string counters = EpConnsMapName(f, shard);
      std::map<uint32_t, const KernelElem*> counter_starts;
      std::set<uint32_t> counter_ends;
      if (absl::Status s = TicketIntervals(k, counters, &counter_starts, &counter_ends); !s.ok()) return s;
      auto& backends = rs->backends[f == Family::kV4 ? 0 : 1];
      for (const auto& [first, e] : counter_starts) {
        auto iv = backends.find(first);
        auto end = counter_ends.upper_bound(first);
        if (iv == backends.end() || end == counter_ends.end() || *end != iv->second.last + 1 || e->objref.empty()) {
          return Refuse(absl::StrCat("an interval of ", counters, " is not one nftproxy writes"));
        }
        iv->second.counter = e->objref;
      }
    }
  }
  return absl::OkStatus();
}

// Where the kernel differs in the fixed part (the skeleton for `node` and
// shards [0, shards)), one line per object; *chains and *sets get the
// names of the fixed part's chains and sets.
std::vector<std::string> FixedDifferences(const KernelTable& k, const NodeSettings& node, uint32_t shards,
                                          std::set<std::string>* chains, std::set<std::string>* sets) {
  std::vector<std::string> out;
  auto fixed = [&](const FixedObjects& objects) {
    for (const SetDef& set : objects.sets) {
      sets->insert(set.name);
      if (!k.sets.count(set.name)) out.push_back(absl::StrCat("set ", set.name, ": missing in the kernel"));
    }
    for (const ChainDef& chain : objects.chains) {
      chains->insert(chain.name);
      CompareChain(chain.name, k.chains, Texts(chain.rules), &out);
    }
  };
  fixed(Skeleton(node));
  for (uint32_t shard = 0; shard < shards; ++shard) fixed(ShardObjects(shard, node));
  ElemChanges cidrs;
  CollectCidrs(SetId::kClusterCidrs, node.cluster_cidrs, &cidrs);
  CollectCidrs(SetId::kNodePortAddrs, node.nodeport_cidrs, &cidrs);
  for (SetId id : {SetId::kClusterCidrs, SetId::kNodePortAddrs}) {
    for (Family f : {Family::kV4, Family::kV6}) {
      const std::string& name = SetName(id, f);
      if (Canonical(ElemsOf(k, name)) != Canonical(cidrs.Set(name))) {
        out.push_back(absl::StrCat("set ", name, ": other elements than the node settings give"));
      }
    }
  }
  for (const std::string& name : k.sets) {
    if (!sets->count(name)) out.push_back(absl::StrCat("set ", name, ": the kernel has it, nftproxy does not want it"));
  }
  return out;
}

// Shards whose backends maps (both families) the kernel has.
uint32_t KernelShards(const KernelTable& k) {
  uint32_t shards = 0;
  while (k.sets.count(BackendsMapName(Family::kV4, shards)) && k.sets.count(BackendsMapName(Family::kV6, shards))) {
    ++shards;
  }
  return shards;
}

}  // namespace

absl::StatusOr<AdoptPlan> PlanAdoption(const KernelTable& k, const Model& model, const std::string& table,
                                       const IndexMap* known) {
  if (!k.exists) return Refuse("there is no table to adopt");
  const NodeSettings node = NormalizedNode(model.node);
  // The fixed part must be exactly ours: same base chains and rules, same
  // sets, node-setting sets with the same elements, every shard's objects.
  const uint32_t shards = KernelShards(k);
  std::set<std::string> fixed_chains, fixed_sets;
  const std::vector<std::string> fixed = FixedDifferences(k, node, shards, &fixed_chains, &fixed_sets);
  if (!fixed.empty()) {
    return Refuse(fixed.size() == 1 ? fixed[0] : absl::StrCat(fixed[0], " (and ", fixed.size() - 1, " more)"));
  }
  // Per-service chains, and the indexes their tickets give away.
  IndexMap kernel_indexes;
  std::map<uint32_t, std::string> by_index;
  for (const auto& [name, rules] : k.chains) {
    if (fixed_chains.count(name)) continue;
    ChainKind kind;
    Family f;
    std::string port_key;
    if (!ParseServiceChainName(name, &kind, &f, &port_key)) {
      return Refuse(absl::StrCat("chain ", name, " is not nftproxy's"));
    }
    auto base = k.ticket_bases.find(name);
    if (base == k.ticket_bases.end() || (kind != ChainKind::kSvc && kind != ChainKind::kLocal)) continue;
    const uint32_t index = (base->second & ~(kTicketBit | kLocalBit)) >> kIndexShift;
    auto [it, fresh] = kernel_indexes.emplace(port_key, index);
    auto [owner, unique] = by_index.emplace(index, port_key);
    if (it->second != index || owner->second != port_key || index > kMaxIndex) {
      return Refuse(absl::StrCat("chain ", name, " has a ticket that another chain has too"));
    }
  }
  AdoptPlan plan;
  plan.base_shards = shards;
  // Keep the kernel's index (or the known one) of every port the model
  // still has.
  const IndexMap& from = known != nullptr ? *known : kernel_indexes;
  IndexMap keep;
  for (const Service& svc : model.services) {
    for (const std::string& key : IndexKeys(svc)) {
      if (auto it = from.find(key); it != from.end()) keep.emplace(key, it->second);
    }
  }
  plan.kept_indexes = keep.size();
  plan.desired = Compile(model, table, &keep, shards);
  for (const auto& [key, index] : plan.desired.indexes) {
    if (index > kMaxIndex) return absl::ResourceExhaustedError("the model has more service ports than fit the ticket");
  }
  // The kernel as a Ruleset: chains that equal the desired ones are those,
  // others get a rule that cannot equal anything compiled.
  Ruleset kernel;
  kernel.table = table;
  kernel.node = node;
  kernel.shards = shards;
  if (absl::Status s = DecodeElements(k, shards, &kernel); !s.ok()) return s;
  if (absl::Status s = DecodeCounters(k, &kernel); !s.ok()) return s;
  // Comparing rules encodes each desired one: on all cores.
  std::vector<std::pair<const std::string*, const std::vector<std::string>*>> service_chains;
  for (const auto& [name, rules] : k.chains) {
    if (!fixed_chains.count(name)) service_chains.emplace_back(&name, &rules);
  }
  std::vector<char> same(service_chains.size(), 0);
  ParallelForParts(service_chains.size(), 1024, [&](size_t, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      auto want = plan.desired.chains.find(*service_chains[i].first);
      same[i] = want != plan.desired.chains.end() && ChainTexts(want->second) == *service_chains[i].second;
    }
  });
  for (size_t i = 0; i < service_chains.size(); ++i) {
    const std::string& name = *service_chains[i].first;
    auto want = plan.desired.chains.find(name);
    if (same[i]) {
      kernel.chains.emplace(name, want->second);
      ++plan.kept_chains;
      continue;
    }
    Chain c;
    c.owner = OwnerOfChain(name, &c.kind);
    Rule differs;
    differs.target = "(as the kernel holds it)";
    c.rules.push_back(differs);
    kernel.chains.emplace(name, std::move(c));
    if (want != plan.desired.chains.end()) ++plan.rewritten_chains;
  }
  Diff(kernel, plan.desired, &plan.removed, &plan.added);
  for (const auto& [addr, n] : kernel.cluster_ips) {
    if (!plan.desired.cluster_ips.count(addr)) plan.removed.cluster_ips.emplace(addr, n);
  }
  for (const auto& [addr, n] : plan.desired.cluster_ips) {
    if (!kernel.cluster_ips.count(addr)) plan.added.cluster_ips.emplace(addr, n);
  }
  for (const auto& [addr, n] : kernel.hairpin) {
    if (!plan.desired.hairpin.count(addr)) plan.removed.hairpin.emplace(addr, n);
  }
  for (const auto& [addr, n] : plan.desired.hairpin) {
    if (!kernel.hairpin.count(addr)) plan.added.hairpin.emplace(addr, n);
  }
  plan.added.shards = std::max(plan.desired.shards, shards);
  plan.added.node = plan.desired.node;  // new shards' objects depend on it
  return plan;
}

}  // namespace nftproxy::dp

namespace nftproxy::dp {
namespace {

std::string Words(const VmapKey& k) {
  return absl::StrCat(k.addr.ToString(), " . ", L4ProtoName(k.proto), " . ", k.port);
}
std::string Words(const NodePortKey& k) {
  return absl::StrCat(L4ProtoName(k.proto), " . ", k.port, " (IPv", FamilyDigit(k.family), ")");
}
std::string Words(const VmapTarget& t) { return absl::StrCat("goto ", t.chain); }
std::string Words(const IpAddr& a) { return a.ToString(); }
std::string Words(uint32_t first) { return absl::StrFormat("0x%08x", first); }
std::string Words(const Interval& iv) {
  return absl::StrFormat("0x%08x : %s . %d%s", iv.last, iv.addr.ToString(), iv.port,
                         iv.counter.empty() ? "" : absl::StrCat(" (counter ", iv.counter, ")"));
}

// Lines for the entries of `kernel` and `want` that differ.
template <typename K, typename V>
void CompareMap(const std::string& set, const std::map<K, V>& kernel, const std::map<K, V>& want,
                std::vector<std::string>* out) {
  for (const auto& [k, v] : want) {
    auto it = kernel.find(k);
    if (it == kernel.end()) {
      out->push_back(absl::StrCat("element ", set, " { ", Words(k), " : ", Words(v), " }: missing in the kernel"));
    } else if (!(it->second == v)) {
      out->push_back(absl::StrCat("element ", set, " { ", Words(k), " }: the kernel has ", Words(it->second),
                                  ", nftproxy wants ", Words(v)));
    }
  }
  for (const auto& [k, v] : kernel) {
    if (!want.count(k)) {
      out->push_back(absl::StrCat("element ", set, " { ", Words(k), " : ", Words(v), " }: the kernel has it, nftproxy does not want it"));
    }
  }
}

template <typename K>
void CompareSet(const std::string& set, const std::map<K, uint32_t>& kernel, const std::map<K, uint32_t>& want,
                std::vector<std::string>* out) {
  for (const auto& [k, n] : want) {
    if (!kernel.count(k)) out->push_back(absl::StrCat("element ", set, " { ", Words(k), " }: missing in the kernel"));
  }
  for (const auto& [k, n] : kernel) {
    if (!want.count(k)) {
      out->push_back(absl::StrCat("element ", set, " { ", Words(k), " }: the kernel has it, nftproxy does not want it"));
    }
  }
}

}  // namespace

std::vector<std::string> KernelDifferences(const KernelTable& k, const Ruleset& desired) {
  std::vector<std::string> out;
  if (!k.exists) {
    out.push_back(absl::StrCat("table inet ", desired.table, ": missing in the kernel"));
    return out;
  }
  std::set<std::string> chains, sets;
  out = FixedDifferences(k, desired.node, desired.shards, &chains, &sets);
  for (const auto& [name, chain] : desired.chains) {
    chains.insert(name);
    CompareChain(name, k.chains, ChainTexts(chain), &out);
  }
  for (const auto& [name, rules] : k.chains) {
    if (!chains.count(name)) out.push_back(absl::StrCat("chain ", name, ": the kernel has it, nftproxy does not want it"));
  }
  Ruleset kernel;
  if (absl::Status s = DecodeElements(k, KernelShards(k), &kernel); !s.ok()) {
    out.push_back(absl::StrCat("elements: ", s.message()));
    return out;
  }
  for (int fam = 0; fam < 2; ++fam) {
    const Family f = fam == 0 ? Family::kV4 : Family::kV6;
    auto only = [f](const auto& m) {
      std::decay_t<decltype(m)> r;
      for (const auto& [key, v] : m) {
        if (key.addr.family == f) r.emplace(key, v);
      }
      return r;
    };
    CompareMap(SetName(SetId::kServiceIps, f), only(kernel.vmap), only(desired.vmap), &out);
    std::map<NodePortKey, VmapTarget> knp, wnp;
    for (const auto& [key, v] : kernel.nodeports) {
      if (key.family == f) knp.emplace(key, v);
    }
    for (const auto& [key, v] : desired.nodeports) {
      if (key.family == f) wnp.emplace(key, v);
    }
    CompareMap(SetName(SetId::kNodePorts, f), knp, wnp, &out);
    std::map<IpAddr, uint32_t> kc, wc, kh, wh;
    for (const auto& [a, n] : kernel.cluster_ips) if (a.family == f) kc.emplace(a, n);
    for (const auto& [a, n] : desired.cluster_ips) if (a.family == f) wc.emplace(a, n);
    for (const auto& [a, n] : kernel.hairpin) if (a.family == f) kh.emplace(a, n);
    for (const auto& [a, n] : desired.hairpin) if (a.family == f) wh.emplace(a, n);
    CompareSet(SetName(SetId::kClusterIps, f), kc, wc, &out);
    CompareSet(SetName(SetId::kHairpin, f), kh, wh, &out);
    CompareMap(absl::StrCat("backends", FamilyDigit(f)), kernel.backends[fam], desired.backends[fam], &out);
  }
  for (const auto& [name, owner] : desired.counters) {
    if (!k.counters.count(name)) out.push_back(absl::StrCat("counter ", name, ": missing in the kernel"));
  }
  for (const auto& [name, value] : k.counters) {
    if (!desired.counters.count(name)) {
      out.push_back(absl::StrCat("counter ", name, ": the kernel has it, nftproxy does not want it"));
    }
  }
  return out;
}

}  // namespace nftproxy::dp
