// Ruleset -> `nft -f` text, in the layout `nft list table` prints: the
// fixed objects from Skeleton/ShardObjects, service rules lowered to the
// same statements the writer encodes.
#include <cstdint>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/ir.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {

namespace {

int FamIdx(Family f) { return f == Family::kV4 ? 0 : 1; }

std::string Hex32(uint32_t v) { return absl::StrFormat("0x%08x", v); }

// A ticket range as nft prints it: a prefix when it is one, else first-last.
std::string TicketRange(uint32_t first, uint32_t last) {
  const uint64_t size = uint64_t{last} - first + 1;
  if (size == 1) return Hex32(first);
  if ((size & (size - 1)) == 0 && (first & (size - 1)) == 0) {
    int bits = 0;
    while ((uint64_t{1} << bits) < size) ++bits;
    return absl::StrCat(Hex32(first), "/", 32 - bits);
  }
  return absl::StrCat(Hex32(first), "-", Hex32(last));
}

std::string Prefix(const Cidr& c) {
  if (c.prefix_len == static_cast<int>(c.addr.size() * 8)) return c.addr.ToString();
  return c.ToString();
}

void CidrElems(const std::vector<Cidr>& cidrs, Family f, std::vector<std::string>* out) {
  std::set<Cidr> sorted;
  for (const Cidr& c : cidrs) {
    if (c.addr.family == f) sorted.insert(c);
  }
  for (const Cidr& c : sorted) out->push_back(Prefix(c));
}

// The elements of one set as nft prints them, in its order.
std::vector<std::string> Elements(const SetDef& set, const Ruleset& rs) {
  const Family f = set.family;
  std::vector<std::string> out;
  switch (set.id) {
    case SetId::kServiceIps:
      for (const auto& [k, t] : rs.vmap) {
        if (k.addr.family == f) {
          out.push_back(absl::StrCat(k.addr.ToString(), " . ", L4ProtoName(k.proto), " . ", k.port, " : goto ", t.chain));
        }
      }
      break;
    case SetId::kNodePorts:
      for (const auto& [k, t] : rs.nodeports) {
        if (k.family == f) out.push_back(absl::StrCat(L4ProtoName(k.proto), " . ", k.port, " : goto ", t.chain));
      }
      break;
    case SetId::kClusterIps:
      for (const auto& [a, refs] : rs.cluster_ips) {
        if (a.family == f) out.push_back(a.ToString());
      }
      break;
    case SetId::kClusterCidrs: CidrElems(rs.node.cluster_cidrs, f, &out); break;
    case SetId::kNodePortAddrs: CidrElems(rs.node.nodeport_cidrs, f, &out); break;
    case SetId::kHairpin:
      for (const auto& [a, refs] : rs.hairpin) {
        if (a.family == f) out.push_back(absl::StrCat(a.ToString(), " . ", a.ToString()));
      }
      break;
    case SetId::kAffinity: break;  // filled by the packet path
    case SetId::kBackends:
    case SetId::kEpConns: {
      const uint32_t lo = kTicketBit | (set.shard << (kShardShift + kIndexShift));
      const uint32_t hi = lo + (1u << (kShardShift + kIndexShift)) - 1;
      const auto& m = rs.backends[FamIdx(f)];
      // Cluster tickets of the shard, then its local ones (bit 30 set).
      for (uint32_t local : {0u, kLocalBit}) {
        for (auto it = m.lower_bound(lo | local); it != m.end() && it->first <= (hi | local); ++it) {
          const Interval& iv = it->second;
          if (set.id == SetId::kBackends) {
            out.push_back(absl::StrCat(TicketRange(it->first, iv.last), " : ", iv.addr.ToString(), " . ", iv.port));
          } else if (!iv.counter.empty()) {
            out.push_back(absl::StrCat(TicketRange(it->first, iv.last), " : \"", iv.counter, "\""));
          }
        }
      }
      break;
    }
  }
  return out;
}

void RenderSet(const SetDef& set, const Ruleset& rs, std::string* out) {
  absl::StrAppend(out, "\t", set.map || set.counters ? "map " : "set ", set.name, " {\n\t\ttype ",
                  DataTypeText(set.key.data(), set.key.size()));
  if (set.map) {
    absl::StrAppend(out, " : ", set.verdict ? "verdict" : DataTypeText(set.data.data(), set.data.size()));
  } else if (set.counters) {
    absl::StrAppend(out, " : counter");
  }
  out->push_back('\n');
  if (set.size) absl::StrAppend(out, "\t\tsize ", set.size, "\n");
  if (set.interval) absl::StrAppend(out, "\t\tflags interval\n");
  if (set.dynamic) absl::StrAppend(out, "\t\tflags dynamic,timeout\n");
  const std::vector<std::string> elems = Elements(set, rs);
  if (!elems.empty()) {
    absl::StrAppend(out, "\t\telements = { ");
    for (size_t i = 0; i < elems.size(); ++i) absl::StrAppend(out, i ? ",\n\t\t\t     " : "", elems[i]);
    absl::StrAppend(out, " }\n");
  }
  absl::StrAppend(out, "\t}\n\n");
}

const char* HookName(Hook h) {
  switch (h) {
    case Hook::kNone: break;
    case Hook::kPrerouting: return "prerouting";
    case Hook::kOutput: return "output";
    case Hook::kPostrouting: return "postrouting";
  }
  return "";
}

// Chains are separated by an empty line.
void OpenChain(const std::string& name, bool* first, std::string* out) {
  if (!*first) out->push_back('\n');
  *first = false;
  absl::StrAppend(out, "\tchain ", name, " {\n");
}

void RenderChain(const ChainDef& chain, bool* first, std::string* out) {
  OpenChain(chain.name, first, out);
  if (chain.hook != Hook::kNone) {
    absl::StrAppend(out, "\t\ttype ", chain.type, " hook ", HookName(chain.hook), " priority ", chain.priority_text,
                    "; policy accept;\n");
  }
  for (const RuleStmts& rule : chain.rules) {
    out->append("\t\t");
    PrintRule(rule, out);
    out->push_back('\n');
  }
  absl::StrAppend(out, "\t}\n");
}

}  // namespace

void RenderTo(const Ruleset& rs, size_t piece, const std::function<bool(absl::string_view)>& sink) {
  std::string out = absl::StrCat("table inet ", rs.table, " {\n\tcomment \"", kTableComment, "\"\n");
  bool more = true;
  // Hands `out` on once it is a piece; false once the sink wants no more.
  auto flush = [&](bool last) {
    if (more && (last || out.size() >= piece)) {
      more = sink(out);
      out.clear();
    }
    return more;
  };
  const FixedObjects skeleton = Skeleton(rs.node);
  std::vector<FixedObjects> shards;
  shards.reserve(rs.shards);
  for (uint32_t shard = 0; shard < rs.shards; ++shard) shards.push_back(ShardObjects(shard, rs.node));
  // `nft list` prints named objects first (by kind, in creation order:
  // here by name), then sets, then chains, each in creation order. A
  // counter's values are the kernel's; the text shows it as created.
  for (const auto& [name, owner] : rs.counters) {
    absl::StrAppend(&out, "\tcounter ", name, " {\n\t\tpackets 0 bytes 0\n\t}\n\n");
    if (!flush(false)) return;
  }
  for (const SetDef& set : skeleton.sets) {
    RenderSet(set, rs, &out);
    if (!flush(false)) return;
  }
  for (const FixedObjects& shard : shards) {
    for (const SetDef& set : shard.sets) {
      RenderSet(set, rs, &out);
      if (!flush(false)) return;
    }
  }
  bool first = true;
  for (const ChainDef& chain : skeleton.chains) RenderChain(chain, &first, &out);
  for (const FixedObjects& shard : shards) {
    for (const ChainDef& chain : shard.chains) {
      RenderChain(chain, &first, &out);
      if (!flush(false)) return;
    }
  }
  RuleStmts stmts;
  for (const auto& [name, chain] : rs.chains) {
    OpenChain(name, &first, &out);
    for (const Rule& rule : chain.rules) {
      stmts.clear();
      LowerRule(rule, &stmts);
      out.append("\t\t");
      PrintRule(stmts, &out);
      out.push_back('\n');
    }
    absl::StrAppend(&out, "\t}\n");
    if (!flush(false)) return;
  }
  out += "}\n";
  flush(true);
}

std::string Render(const Ruleset& rs) {
  std::string text;
  RenderTo(rs, SIZE_MAX, [&text](absl::string_view piece) {
    text.append(piece.data(), piece.size());
    return true;
  });
  return text;
}

}  // namespace nftproxy::dp
