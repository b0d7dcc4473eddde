// The compiler: Model -> Ruleset, one service at a time, and Diff.
#include "dataplane/ruleset.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/parallel.h"

namespace nftproxy::dp {

const char* L4ProtoName(L4Proto p) {
  switch (p) {
    case L4Proto::kTcp: return "tcp";
    case L4Proto::kUdp: return "udp";
    case L4Proto::kSctp: return "sctp";
  }
  return "?";
}

std::string OwnerOfTicket(const Ruleset& rs, uint32_t ticket) {
  const uint32_t index = (ticket & ~(kTicketBit | kLocalBit)) >> kIndexShift;
  for (const auto& [key, i] : rs.indexes) {
    if (i == index) return ServiceOwner(key.substr(0, key.find('/', key.find('/') + 1)));
  }
  return kUnknownOwner;
}

std::vector<uint32_t> BucketShares(const std::vector<uint32_t>& weights, uint32_t buckets) {
  std::vector<uint32_t> share(weights.size(), 0);
  const uint64_t total = std::accumulate(weights.begin(), weights.end(), uint64_t{0});
  if (total == 0 || weights.empty()) return share;
  // Largest remainder: floor shares first, then one more bucket to the
  // largest fractional parts (earlier backends win ties).
  std::vector<std::pair<uint64_t, size_t>> rest;
  uint32_t used = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const uint64_t exact = uint64_t{weights[i]} * buckets;
    share[i] = static_cast<uint32_t>(exact / total);
    used += share[i];
    rest.push_back({exact % total, i});
  }
  std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; used < buckets && k < rest.size(); ++k, ++used) ++share[rest[k].second];
  // Every listed backend gets at least one bucket while there are enough,
  // taken from the largest share.
  for (size_t i = 0; i < share.size() && share.size() <= buckets; ++i) {
    if (share[i] > 0) continue;
    auto big = std::max_element(share.begin(), share.end());
    --*big;
    share[i] = 1;
  }
  return share;
}

namespace {

constexpr uint32_t kHashSeed = 0x9e3779b9u;

int FamIdx(Family f) { return f == Family::kV4 ? 0 : 1; }

std::string PortKey(const Service& svc, const ServicePort& p) {
  return absl::StrCat(svc.ns, "/", svc.name, "/", L4ProtoName(p.proto), "/", p.port);
}

bool HasFamily(const std::vector<IpAddr>& v, Family f) {
  return std::any_of(v.begin(), v.end(), [f](const IpAddr& a) { return a.family == f; });
}

// Which families a service port is programmed for: those of the service's
// frontend addresses; a NodePort also for the families of its endpoints.
std::vector<Family> PortFamilies(const Service& svc, const ServicePort& port) {
  std::vector<Family> out;
  for (Family fam : {Family::kV4, Family::kV6}) {
    bool on = HasFamily(svc.cluster_ips, fam) || HasFamily(svc.external_ips, fam) || HasFamily(svc.lb_ips, fam);
    if (!on && port.node_port != 0) {
      on = std::any_of(port.backends.begin(), port.backends.end(),
                       [fam](const Backend& b) { return b.addr.family == fam; });
      // A NodePort with no endpoints at all still answers (rejects) on IPv4.
      on |= fam == Family::kV4 && port.backends.empty();
    }
    if (on) out.push_back(fam);
  }
  return out;
}

// Rules that write a ticket for `backends` and hand the packet to the pick
// chain; the matching map elements go into `rs`.
void AddPickRules(const Service& svc, const std::string& port_key, Family fam, uint32_t base,
                  const std::vector<const Backend*>& backends, Ruleset* rs, std::vector<Rule>* rules) {
  std::vector<uint32_t> weights;
  for (const Backend* b : backends) weights.push_back(b->weight);
  uint32_t modulus = kBuckets;
  Rule::Ticket ticket = Rule::Ticket::kRandom;
  if (svc.lb == LbMode::kRoundRobin) {
    // One ticket per unit of (reduced) weight, handed out in turn.
    uint32_t g = 0;
    for (uint32_t w : weights) g = std::gcd(g, w);
    uint64_t total = 0;
    for (uint32_t& w : weights) total += (w /= std::max<uint32_t>(g, 1));
    modulus = static_cast<uint32_t>(std::clamp<uint64_t>(total, 1, kBuckets));
    ticket = Rule::Ticket::kRoundRobin;
  } else if (svc.lb == LbMode::kSourceHash) {
    ticket = Rule::Ticket::kSourceHash;
  }
  const std::vector<uint32_t> shares = BucketShares(weights, modulus);
  uint32_t at = base;
  for (size_t i = 0; i < backends.size(); ++i) {
    if (shares[i] == 0) continue;
    Interval& iv = rs->backends[FamIdx(fam)][at];
    iv = Interval{at + shares[i] - 1, backends[i]->addr, backends[i]->port, {}};
    if (rs->node.endpoint_counters) {
      iv.counter = EndpointCounterName(port_key, iv.addr, iv.port);
      rs->counters.emplace(iv.counter, ServiceOwner(svc.Key()));
    }
    at += shares[i];
  }
  const uint32_t shard = ShardOfTicket(base);
  rs->shards = std::max(rs->shards, shard + 1);
  const std::string pick = PickChainName(fam, shard);

  Rule r;
  r.family = fam;
  r.save_mark = true;
  if (rs->node.counters) r.counter = ConnCounterName(port_key);
  r.ticket = ticket;
  r.modulus = modulus;
  r.offset = base;
  r.seed = ticket == Rule::Ticket::kSourceHash ? kHashSeed : 0;
  if (svc.affinity_timeout_s == 0) {
    r.verdict = Rule::Verdict::kGoto;
    r.target = pick;
    rules->push_back(r);
    return;
  }
  rules->push_back(r);
  Rule lookup;
  lookup.family = fam;
  lookup.ticket = Rule::Ticket::kAffinity;
  rules->push_back(lookup);
  Rule update;
  update.family = fam;
  update.affinity_timeout_s = svc.affinity_timeout_s;
  update.verdict = Rule::Verdict::kGoto;
  update.target = pick;
  rules->push_back(update);
}

Rule Goto(Family fam, const std::string& target) {
  Rule r;
  r.family = fam;
  r.verdict = Rule::Verdict::kGoto;
  r.target = target;
  return r;
}

void CompileFamily(const Service& svc, const ServicePort& port, const std::string& key,
                   uint32_t index, Family fam, Ruleset* rs) {
  const std::string owner = ServiceOwner(svc.Key());
  const bool has_cluster_ip = HasFamily(svc.cluster_ips, fam);
  const bool has_ext = HasFamily(svc.external_ips, fam) || HasFamily(svc.lb_ips, fam) || port.node_port != 0;
  const bool internal_local = has_cluster_ip && svc.internal_policy == Policy::kLocal;
  const bool external_local = has_ext && svc.external_policy == Policy::kLocal;
  const bool need_cluster = (has_cluster_ip && !internal_local) || has_ext;
  const bool need_local = internal_local || external_local;

  std::vector<const Backend*> all, local;
  for (const Backend& b : port.backends) {
    if (b.addr.family != fam || b.weight == 0) continue;
    all.push_back(&b);
    if (b.local) local.push_back(&b);
    ++rs->hairpin[b.addr];
  }
  const uint32_t base = kTicketBit | (index << kIndexShift);
  const std::string svc_chain = ServiceChainName(ChainKind::kSvc, fam, key);
  const std::string local_chain = ServiceChainName(ChainKind::kLocal, fam, key);
  const std::string ext_chain = ServiceChainName(ChainKind::kExt, fam, key);
  const std::string fw_chain = ServiceChainName(ChainKind::kFw, fam, key);
  if (need_cluster) {
    Chain& c = rs->chains[svc_chain];
    c.kind = ChainKind::kSvc;
    c.owner = owner;
    AddPickRules(svc, key, fam, base, all, rs, &c.rules);
  }
  if (need_local) {
    Chain& c = rs->chains[local_chain];
    c.kind = ChainKind::kLocal;
    c.owner = owner;
    AddPickRules(svc, key, fam, base | kLocalBit, local, rs, &c.rules);
  }
  if (has_ext) {
    Chain& c = rs->chains[ext_chain];
    c.kind = ChainKind::kExt;
    c.owner = owner;
    if (!external_local) {
      Rule r = Goto(fam, svc_chain);
      r.masquerade = true;
      c.rules.push_back(r);
    } else {
      // The node itself and pods keep cluster-wide endpoints (the node's
      // own traffic is masqueraded so replies come back here).
      Rule self = Goto(fam, svc_chain);
      self.match = Rule::Match::kLocalSource;
      self.masquerade = true;
      c.rules.push_back(self);
      Rule pods = Goto(fam, svc_chain);
      pods.match = Rule::Match::kClusterSource;
      c.rules.push_back(pods);
      c.rules.push_back(Goto(fam, local_chain));
    }
  }
  const bool firewall = HasFamily(svc.lb_ips, fam) && !svc.lb_source_ranges.empty();
  if (firewall) {
    Chain& c = rs->chains[fw_chain];
    c.kind = ChainKind::kFw;
    c.owner = owner;
    for (const Cidr& range : svc.lb_source_ranges) {
      if (range.addr.family != fam) continue;
      Rule r = Goto(fam, ext_chain);
      r.match = Rule::Match::kSourcePrefix;
      r.prefix = range.Network();
      c.rules.push_back(r);
    }
    Rule drop;
    drop.family = fam;
    drop.verdict = Rule::Verdict::kDrop;
    c.rules.push_back(drop);
  }
  for (const IpAddr& ip : svc.cluster_ips) {
    if (ip.family != fam) continue;
    ++rs->cluster_ips[ip];
    rs->vmap[VmapKey{ip, port.proto, port.port}] = VmapTarget{internal_local ? local_chain : svc_chain, owner};
  }
  for (const IpAddr& ip : svc.external_ips) {
    if (ip.family == fam) rs->vmap[VmapKey{ip, port.proto, port.port}] = VmapTarget{ext_chain, owner};
  }
  for (const IpAddr& ip : svc.lb_ips) {
    if (ip.family == fam) {
      rs->vmap[VmapKey{ip, port.proto, port.port}] = VmapTarget{firewall ? fw_chain : ext_chain, owner};
    }
  }
  if (port.node_port != 0) {
    rs->nodeports[NodePortKey{fam, port.proto, port.node_port}] = VmapTarget{ext_chain, owner};
  }
}

}  // namespace

std::vector<std::string> IndexKeys(const Service& svc) {
  std::vector<std::string> out;
  for (const ServicePort& port : svc.ports) {
    if (!PortFamilies(svc, port).empty()) out.push_back(PortKey(svc, port));
  }
  return out;
}

void CompileService(const Service& svc, const IndexMap& indexes, Ruleset* out) {
  for (const ServicePort& port : svc.ports) {
    const std::vector<Family> families = PortFamilies(svc, port);
    if (families.empty()) continue;
    const std::string key = PortKey(svc, port);
    const uint32_t index = indexes.at(key);
    out->indexes[key] = index;
    if (out->node.counters) out->counters[ConnCounterName(key)] = ServiceOwner(svc.Key());
    for (Family fam : families) CompileFamily(svc, port, key, index, fam, out);
  }
}

namespace {

// Whether every address of `inner` is in `outer`.
bool Covers(const Cidr& outer, const Cidr& inner) {
  return outer.addr.family == inner.addr.family && outer.prefix_len <= inner.prefix_len &&
         Cidr{inner.addr, outer.prefix_len}.Network().addr == outer.addr;
}

std::vector<Cidr> Disjoint(const std::vector<Cidr>& cidrs) {
  std::vector<Cidr> sorted;
  for (const Cidr& c : cidrs) sorted.push_back(c.Network());
  // By family and address, the wider of two at one address first: a CIDR
  // covered by an earlier one is covered by the last one kept (prefixes
  // nest or are disjoint).
  std::sort(sorted.begin(), sorted.end());
  std::vector<Cidr> out;
  for (const Cidr& c : sorted) {
    if (out.empty() || !Covers(out.back(), c)) out.push_back(c);
  }
  return out;
}

}  // namespace

NodeSettings NormalizedNode(const NodeSettings& node) {
  NodeSettings out;
  out.cluster_cidrs = Disjoint(node.cluster_cidrs);
  out.nodeport_cidrs = Disjoint(node.nodeport_cidrs);
  out.counters = node.counters;
  out.endpoint_counters = node.counters && node.endpoint_counters;
  return out;
}

namespace {

// Moves the nodes of `from` into `to` (keys are disjoint). Hinted at the
// end: parts of a compile mostly follow each other in key order, which
// makes each insert constant time (std::map::merge searches for every one).
template <typename M>
void Splice(M* from, M* to) {
  while (!from->empty()) to->insert(to->end(), from->extract(from->begin()));
}

}  // namespace

Ruleset Compile(const Model& model, const std::string& table, const IndexMap* indexes, uint32_t min_shards) {
  Ruleset rs;
  rs.table = table;
  rs.node = NormalizedNode(model.node);
  // Indexes: keep the given ones, fill the lowest free slots.
  IndexMap assigned;
  std::set<uint32_t> used;
  std::vector<std::string> fresh;
  for (const Service& svc : model.services) {
    for (std::string& key : IndexKeys(svc)) {
      auto it = indexes ? indexes->find(key) : IndexMap::const_iterator{};
      if (indexes && it != indexes->end()) {
        assigned[key] = it->second;
        used.insert(it->second);
      } else {
        fresh.push_back(std::move(key));
      }
    }
  }
  uint32_t next = 0;
  for (const std::string& key : fresh) {
    while (used.count(next)) ++next;
    assigned[key] = next++;
  }
  // Services compile independently: on all cores, each range into a
  // Ruleset of its own, merged afterwards (their objects are disjoint but
  // for the shared address-set elements, whose counts add up).
  std::vector<Ruleset> parts(ParallelParts(model.services.size(), 2048));
  for (Ruleset& part : parts) part.node = rs.node;
  ParallelForParts(model.services.size(), 2048, [&](size_t part, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) CompileService(model.services[i], assigned, &parts[part]);
  });
  for (Ruleset& part : parts) {
    Splice(&part.chains, &rs.chains);
    Splice(&part.vmap, &rs.vmap);
    Splice(&part.nodeports, &rs.nodeports);
    for (int fam = 0; fam < 2; ++fam) Splice(&part.backends[fam], &rs.backends[fam]);
    Splice(&part.indexes, &rs.indexes);
    Splice(&part.counters, &rs.counters);
    for (const auto& [addr, n] : part.cluster_ips) rs.cluster_ips[addr] += n;
    for (const auto& [addr, n] : part.hairpin) rs.hairpin[addr] += n;
    rs.shards = std::max(rs.shards, part.shards);
  }
  rs.shards = std::max(rs.shards, min_shards);
  return rs;
}

namespace {

// Adds to *removed / *added the entries of two ordered maps that differ.
template <typename K, typename V>
void DiffMap(const std::map<K, V>& from, const std::map<K, V>& to, std::map<K, V>* removed,
             std::map<K, V>* added) {
  for (const auto& [k, v] : from) {
    auto it = to.find(k);
    if (it == to.end() || !(it->second == v)) removed->emplace(k, v);
  }
  for (const auto& [k, v] : to) {
    auto it = from.find(k);
    if (it == from.end() || !(it->second == v)) added->emplace(k, v);
  }
}

}  // namespace

void Diff(const Ruleset& from, const Ruleset& to, Ruleset* removed, Ruleset* added) {
  DiffMap(from.chains, to.chains, &removed->chains, &added->chains);
  DiffMap(from.vmap, to.vmap, &removed->vmap, &added->vmap);
  DiffMap(from.nodeports, to.nodeports, &removed->nodeports, &added->nodeports);
  DiffMap(from.counters, to.counters, &removed->counters, &added->counters);
  for (int fam = 0; fam < 2; ++fam) DiffMap(from.backends[fam], to.backends[fam], &removed->backends[fam], &added->backends[fam]);
  for (const auto& [key, index] : from.indexes) removed->indexes.emplace(key, index);
  for (const auto& [key, index] : to.indexes) added->indexes.emplace(key, index);
  added->shards = std::max(added->shards, to.shards);
}

}  // namespace nftproxy::dp
