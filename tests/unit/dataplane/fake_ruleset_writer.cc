#include "tests/unit/dataplane/fake_ruleset_writer.h"

#include <cerrno>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"

namespace nftproxy::dp::testing {
namespace {

absl::Status Refuse(const std::string& what, int err) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": kernel refused the change: ", strerror(err)));
}


bool PickChainExists(const Ruleset& k, const std::string& name) {
  for (uint32_t s = 0; s < k.shards; ++s) {
    for (Family f : {Family::kV4, Family::kV6}) {
      if (PickChainName(f, s) == name) return true;
    }
  }
  return false;
}

bool ChainExists(const Ruleset& k, const std::string& name) {
  return k.chains.count(name) > 0 || PickChainExists(k, name);
}

// The first rule of `k` that names counter `name`, or "".
std::string CounterUser(const Ruleset& k, const std::string& name) {
  for (const auto& [chain, c] : k.chains) {
    for (const Rule& r : c.rules) {
      if (r.counter == name) return absl::StrCat("a rule of chain ", chain);
    }
  }
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : k.backends[fam]) {
      if (iv.counter == name) return absl::StrCat("an epconns element ", first);
    }
  }
  return "";
}

// The first rule target or element of `k` that goes to `name`, or "".
std::string ReferrerOf(const Ruleset& k, const std::string& name) {
  for (const auto& [chain, c] : k.chains) {
    for (const Rule& r : c.rules) {
      if (r.verdict == Rule::Verdict::kGoto && r.target == name) return absl::StrCat("a rule of chain ", chain);
    }
  }
  for (const auto& [key, t] : k.vmap) {
    if (t.chain == name) return absl::StrCat("service-ips element ", key.addr.ToString(), "/", key.port);
  }
  for (const auto& [key, t] : k.nodeports) {
    if (t.chain == name) return absl::StrCat("nodeports element ", key.port);
  }
  return "";
}

absl::Status CheckRuleTargets(const Ruleset& k, const std::string& name, const Chain& chain) {
  for (const Rule& r : chain.rules) {
    if (!r.counter.empty() && !k.counters.count(r.counter)) {
      return Refuse(absl::StrCat(chain.owner, " (chain ", name, "): missing counter ", r.counter), ENOENT);
    }
    if (r.verdict == Rule::Verdict::kGoto && !ChainExists(k, r.target)) {
      return Refuse(absl::StrCat(chain.owner, " (chain ", name, "): goto missing chain ", r.target), ENOENT);
    }
  }
  return absl::OkStatus();
}

// Adds one interval to a backends map, as an interval set would: the shard's
// map must exist and the range must not overlap another.
absl::Status AddInterval(Ruleset* k, int fam, uint32_t first, const Interval& iv) {
  const uint32_t shard = ShardOfTicket(first);
  const std::string set = BackendsMapName(fam == 0 ? Family::kV4 : Family::kV6, shard);
  if (shard >= k->shards) return Refuse(absl::StrCat("set ", set, " (missing map)"), ENOENT);
  if (!iv.counter.empty() && !k->counters.count(iv.counter)) {
    return Refuse(absl::StrCat("set ", set, " element ", first, ": missing counter ", iv.counter), ENOENT);
  }
  auto& m = k->backends[fam];
  auto next = m.lower_bound(first);
  if (next != m.end() && next->first <= iv.last) {
    return Refuse(absl::StrCat("set ", set, " element ", first), EEXIST);
  }
  if (next != m.begin() && std::prev(next)->second.last >= first) {
    return Refuse(absl::StrCat("set ", set, " element ", first), EEXIST);
  }
  m.emplace(first, iv);
  return absl::OkStatus();
}

template <typename K>
absl::Status AddGoto(const Ruleset& k, std::map<K, VmapTarget>* m, const K& key, const VmapTarget& t,
                     const char* set) {
  if (m->count(key)) return Refuse(absl::StrCat("set ", set, " element of ", t.owner), EEXIST);
  if (!ChainExists(k, t.chain)) {
    return Refuse(absl::StrCat("set ", set, " element of ", t.owner, ": goto missing chain ", t.chain), ENOENT);
  }
  m->emplace(key, t);
  return absl::OkStatus();
}

absl::Status Validate(const Ruleset& to) {
  for (const auto& [name, chain] : to.chains) {
    if (auto s = CheckRuleTargets(to, name, chain); !s.ok()) return s;
  }
  Ruleset scratch = to;
  scratch.vmap.clear();
  scratch.nodeports.clear();
  scratch.backends[0].clear();
  scratch.backends[1].clear();
  for (const auto& [k, t] : to.vmap) {
    if (auto s = AddGoto(scratch, &scratch.vmap, k, t, "service-ips"); !s.ok()) return s;
  }
  for (const auto& [k, t] : to.nodeports) {
    if (auto s = AddGoto(scratch, &scratch.nodeports, k, t, "nodeports"); !s.ok()) return s;
  }
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : to.backends[fam]) {
      if (auto s = AddInterval(&scratch, fam, first, iv); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

void CountOne(std::map<IpAddr, uint32_t>* m) {
  for (auto& [a, n] : *m) n = 1;
}

}  // namespace

void FakeRulesetWriter::FailNext(int n, absl::Status status) {
  fail_next_ = n;
  fail_status_ = std::move(status);
}

absl::Status FakeRulesetWriter::Injected() {
  if (fail_next_ <= 0) return absl::OkStatus();
  --fail_next_;
  ++refused_commits_;
  return fail_status_;
}

absl::Status FakeRulesetWriter::CommitFull(const Ruleset& to, CommitStats* stats,
                                           const std::function<void()>& alongside) {
  if (alongside) alongside();
  if (auto s = Injected(); !s.ok()) return s;
  if (auto s = Validate(to); !s.ok()) {
    ++refused_commits_;
    last_refusal_ = s;
    return s;
  }
  state_ = to;
  state_.indexes.clear();
  counters_created_ += to.counters.size();
  CountOne(&state_.cluster_ips);
  CountOne(&state_.hairpin);
  exists_ = true;
  ++full_commits_;
  if (stats != nullptr) {
    *stats = CommitStats{};
    stats->full = true;
    stats->messages = 1;
  }
  return absl::OkStatus();
}

absl::Status FakeRulesetWriter::CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                                            const Ruleset& added, CommitStats* stats) {
  if (auto s = Injected(); !s.ok()) return s;
  size_t created = 0;
  auto apply = [&](Ruleset* k) -> absl::Status {
    if (!exists_ || table != k->table) return Refuse(absl::StrCat("table inet ", table), ENOENT);
    // The batch NftWriter builds, in its order: element deletions ...
    for (const auto& [key, t] : removed.vmap) {
      if (!k->vmap.erase(key)) return Refuse(absl::StrCat("set service-ips elements of ", t.owner), ENOENT);
    }
    for (const auto& [key, t] : removed.nodeports) {
      if (!k->nodeports.erase(key)) return Refuse(absl::StrCat("set nodeports elements of ", t.owner), ENOENT);
    }
    for (const auto& [a, n] : removed.cluster_ips) {
      if (!k->cluster_ips.erase(a)) return Refuse(absl::StrCat("set cluster-ips elements of ", a.ToString()), ENOENT);
    }
    for (const auto& [a, n] : removed.hairpin) {
      if (!k->hairpin.erase(a)) return Refuse(absl::StrCat("set hairpin elements of ", a.ToString()), ENOENT);
    }
    for (int fam = 0; fam < 2; ++fam) {
      for (const auto& [first, iv] : removed.backends[fam]) {
        auto it = k->backends[fam].find(first);
        if (ShardOfTicket(first) >= k->shards || it == k->backends[fam].end() || it->second.last != iv.last ||
            it->second.counter.empty() != iv.counter.empty()) {
          return Refuse(absl::StrCat("backends element ", first), ENOENT);
        }
        k->backends[fam].erase(it);
      }
    }
    // ... new shards ...
    for (uint32_t shard = base_shards; shard < added.shards; ++shard) {
      if (shard < k->shards) return Refuse(absl::StrCat("chain ", PickChainName(Family::kV4, shard)), EEXIST);
      if (shard > k->shards) {
        return Refuse(absl::StrCat("shard ", shard, " created before shard ", k->shards), EINVAL);
      }
      k->shards = shard + 1;
    }
    // ... new counters (never replaced) ...
    for (const auto& [name, owner] : added.counters) {
      if (removed.counters.count(name)) continue;
      if (!k->counters.emplace(name, owner).second) return Refuse(absl::StrCat("counter ", name), EEXIST);
      ++created;
    }
    // ... new chains, then the rules of new and changed ones ...
    for (const auto& [name, chain] : added.chains) {
      if (removed.chains.count(name)) continue;
      if (ChainExists(*k, name)) return Refuse(absl::StrCat(chain.owner, " (chain ", name, ")"), EEXIST);
      Chain& c = k->chains[name];
      c.kind = chain.kind;
      c.owner = chain.owner;
    }
    for (const auto& [name, chain] : added.chains) {
      auto it = k->chains.find(name);
      if (it == k->chains.end()) return Refuse(absl::StrCat(chain.owner, " (chain ", name, ")"), ENOENT);
      if (removed.chains.count(name)) it->second.rules.clear();
      if (auto s = CheckRuleTargets(*k, name, chain); !s.ok()) return s;
      it->second.kind = chain.kind;
      it->second.owner = chain.owner;
      it->second.rules.insert(it->second.rules.end(), chain.rules.begin(), chain.rules.end());
    }
    // ... element additions ...
    for (const auto& [key, t] : added.vmap) {
      if (auto s = AddGoto(*k, &k->vmap, key, t, "service-ips"); !s.ok()) return s;
    }
    for (const auto& [key, t] : added.nodeports) {
      if (auto s = AddGoto(*k, &k->nodeports, key, t, "nodeports"); !s.ok()) return s;
    }
    for (const auto& [a, n] : added.cluster_ips) {
      if (!k->cluster_ips.emplace(a, 1).second) return Refuse(absl::StrCat("set cluster-ips ", a.ToString()), EEXIST);
    }
    for (const auto& [a, n] : added.hairpin) {
      if (!k->hairpin.emplace(a, 1).second) return Refuse(absl::StrCat("set hairpin ", a.ToString()), EEXIST);
    }
    for (int fam = 0; fam < 2; ++fam) {
      for (const auto& [first, iv] : added.backends[fam]) {
        if (auto s = AddInterval(k, fam, first, iv); !s.ok()) return s;
      }
    }
    // ... and the chains that go, referrers first.
    for (ChainKind kind : kDeleteOrder) {
      for (const auto& [name, chain] : removed.chains) {
        if (chain.kind != kind || added.chains.count(name)) continue;
        auto it = k->chains.find(name);
        if (it == k->chains.end()) return Refuse(absl::StrCat(chain.owner, " (chain ", name, ")"), ENOENT);
        k->chains.erase(it);
        if (std::string by = ReferrerOf(*k, name); !by.empty()) {
          return Refuse(absl::StrCat(chain.owner, " (chain ", name, "), still used by ", by), EBUSY);
        }
      }
    }
    // ... then the counters that go, after the rules that named them.
    for (const auto& [name, owner] : removed.counters) {
      if (added.counters.count(name)) continue;
      if (!k->counters.erase(name)) return Refuse(absl::StrCat("counter ", name), ENOENT);
      if (std::string by = CounterUser(*k, name); !by.empty()) {
        return Refuse(absl::StrCat("counter ", name, ", still used by ", by), EBUSY);
      }
    }
    return absl::OkStatus();
  };
  Ruleset next = state_;
  if (auto s = apply(&next); !s.ok()) {
    ++refused_commits_;
    last_refusal_ = s;
    return s;
  }
  state_ = std::move(next);
  counters_created_ += created;
  ++delta_commits_;
  if (stats != nullptr) {
    *stats = CommitStats{};
    stats->messages = 1;
  }
  return absl::OkStatus();
}

namespace {

template <typename K, typename V, typename Print>
void DiffKeys(const char* what, const std::map<K, V>& have, const std::map<K, V>& want, Print print,
              bool compare_values, std::string* out) {
  int shown = 0;
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end()) {
      if (shown++ < 5) absl::StrAppend(out, what, " missing in the kernel: ", print(k), "\n");
    } else if (compare_values && !(it->second == v)) {
      if (shown++ < 5) absl::StrAppend(out, what, " differs: ", print(k), "\n");
    }
  }
  for (const auto& [k, v] : have) {
    if (!want.count(k) && shown++ < 5) absl::StrAppend(out, what, " extra in the kernel: ", print(k), "\n");
  }
}

}  // namespace

std::string RulesetDifference(const Ruleset& kernel, const Ruleset& want) {
  std::string out;
  if (kernel.table != want.table) absl::StrAppend(&out, "table ", kernel.table, " vs ", want.table, "\n");
  if (!Ruleset::SameNode(kernel.node, want.node)) absl::StrAppend(&out, "node settings differ\n");
  if (kernel.shards != want.shards) absl::StrAppend(&out, "shards ", kernel.shards, " vs ", want.shards, "\n");
  DiffKeys("chain", kernel.chains, want.chains, [](const std::string& k) { return k; }, true, &out);
  auto key = [](const VmapKey& k) { return absl::StrCat(k.addr.ToString(), " ", L4ProtoName(k.proto), "/", k.port); };
  DiffKeys("service-ips element", kernel.vmap, want.vmap, key, true, &out);
  auto np = [](const NodePortKey& k) {
    return absl::StrCat(k.family == Family::kV4 ? "v4 " : "v6 ", L4ProtoName(k.proto), "/", k.port);
  };
  DiffKeys("nodeports element", kernel.nodeports, want.nodeports, np, true, &out);
  auto addr = [](const IpAddr& a) { return a.ToString(); };
  DiffKeys("cluster-ips element", kernel.cluster_ips, want.cluster_ips, addr, false, &out);
  DiffKeys("hairpin element", kernel.hairpin, want.hairpin, addr, false, &out);
  DiffKeys("counter", kernel.counters, want.counters, [](const std::string& k) { return k; }, true, &out);
  for (int fam = 0; fam < 2; ++fam) {
    auto ticket = [](uint32_t t) { return absl::StrCat("ticket ", absl::Hex(t, absl::kZeroPad8)); };
    DiffKeys(fam == 0 ? "backends4 element" : "backends6 element", kernel.backends[fam], want.backends[fam], ticket,
             true, &out);
  }
  return out;
}

}  // namespace nftproxy::dp::testing
