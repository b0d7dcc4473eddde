#include "dataplane/ruleset.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace nftproxy::dp {

const char* L4ProtoName(L4Proto p) {
  switch (p) {
    case L4Proto::kTcp: return "tcp";
    case L4Proto::kUdp: return "udp";
    case L4Proto::kSctp: return "sctp";
  }
  return "?";
}

std::string ServiceChainName(const Service& svc, const ServicePort& port, Family family) {
  return absl::StrCat(family == Family::kV4 ? "svc4/" : "svc6/", svc.ns, "/", svc.name, "/",
                      L4ProtoName(port.proto), "/", port.port);
}

namespace {

// Each rule takes weight w_i out of the weight still remaining, so that
// P(backend i) = w_i / total. The last backend needs no condition.
std::vector<DnatRule> BackendRules(const std::vector<const Backend*>& backends, L4Proto proto,
                                   LbMode lb) {
  uint64_t remaining = 0;
  for (const Backend* b : backends) remaining += b->weight;
  std::vector<DnatRule> rules;
  rules.reserve(backends.size());
  for (size_t i = 0; i < backends.size(); ++i) {
    const Backend& b = *backends[i];
    DnatRule r;
    r.proto = proto;
    r.addr = b.addr;
    r.port = b.port;
    if (i + 1 < backends.size()) {
      switch (lb) {
        case LbMode::kRandom: r.pick = Pick::kRandom; break;
        case LbMode::kRoundRobin: r.pick = Pick::kRoundRobin; break;
        case LbMode::kSourceHash:
          r.pick = Pick::kSourceHash;
          // A different seed per position keeps the rules' decisions independent.
          r.seed = 0x9e3779b9u * static_cast<uint32_t>(i + 1);
          break;
      }
      r.modulus = static_cast<uint32_t>(remaining);
      r.below = b.weight;
    }
    remaining -= b.weight;
    rules.push_back(r);
  }
  return rules;
}

}  // namespace

Ruleset Compile(const Model& model, const std::string& table) {
  Ruleset rs;
  rs.table = table;
  for (const Service& svc : model.services) {
    const std::string owner = absl::StrCat("service ", svc.Key());
    for (const ServicePort& port : svc.ports) {
      for (Family fam : {Family::kV4, Family::kV6}) {
        bool has_vip = false;
        for (const IpAddr& vip : svc.vips) has_vip |= vip.family == fam;
        if (!has_vip) continue;
        std::vector<const Backend*> backends;
        for (const Backend& b : port.backends) {
          if (b.addr.family == fam && b.weight > 0) backends.push_back(&b);
        }
        const std::string chain = ServiceChainName(svc, port, fam);
        rs.chains[chain] = Chain{owner, BackendRules(backends, port.proto, svc.lb)};
        for (const IpAddr& vip : svc.vips) {
          if (vip.family != fam) continue;
          rs.vmap[VmapKey{vip, port.proto, port.port}] = VmapTarget{chain, owner};
        }
      }
    }
  }
  return rs;
}

namespace {

std::string RenderRule(const DnatRule& r) {
  const bool v4 = r.addr.family == Family::kV4;
  std::string out = absl::StrCat("meta l4proto ", L4ProtoName(r.proto), " ");
  switch (r.pick) {
    case Pick::kAlways: break;
    case Pick::kRandom:
      absl::StrAppend(&out, "numgen random mod ", r.modulus, " < ", r.below, " ");
      break;
    case Pick::kRoundRobin:
      absl::StrAppend(&out, "numgen inc mod ", r.modulus, " < ", r.below, " ");
      break;
    case Pick::kSourceHash:
      absl::StrAppend(&out, "jhash ", v4 ? "ip" : "ip6", " saddr mod ", r.modulus, " seed ",
                      absl::StrFormat("0x%x", r.seed), " < ", r.below, " ");
      break;
  }
  if (v4) {
    absl::StrAppend(&out, "dnat ip to ", r.addr.ToString(), ":", r.port);
  } else {
    absl::StrAppend(&out, "dnat ip6 to [", r.addr.ToString(), "]:", r.port);
  }
  return out;
}

void RenderMap(const Ruleset& rs, Family fam, std::string* out) {
  const bool v4 = fam == Family::kV4;
  absl::StrAppend(out, "\tmap ", v4 ? kServiceMap4 : kServiceMap6, " {\n\t\ttype ",
                  v4 ? "ipv4_addr" : "ipv6_addr", " . inet_proto . inet_service : verdict\n");
  std::vector<std::string> elems;
  for (const auto& [key, target] : rs.vmap) {
    if (key.addr.family != fam) continue;
    elems.push_back(absl::StrCat(key.addr.ToString(), " . ", L4ProtoName(key.proto), " . ",
                                 key.port, " : goto ", target.chain));
  }
  if (!elems.empty()) {
    absl::StrAppend(out, "\t\telements = { ");
    for (size_t i = 0; i < elems.size(); ++i) {
      absl::StrAppend(out, i ? ",\n\t\t\t     " : "", elems[i]);
    }
    absl::StrAppend(out, " }\n");
  }
  absl::StrAppend(out, "\t}\n");
}

}  // namespace

std::string Render(const Ruleset& rs) {
  std::string out = absl::StrCat("table inet ", rs.table, " {\n");
  RenderMap(rs, Family::kV4, &out);
  out += "\n";
  RenderMap(rs, Family::kV6, &out);
  absl::StrAppend(&out, "\n\tchain ", kServicesChain, " {\n",
                  "\t\tip daddr . meta l4proto . th dport vmap @", kServiceMap4, "\n",
                  "\t\tip6 daddr . meta l4proto . th dport vmap @", kServiceMap6, "\n\t}\n");
  absl::StrAppend(&out, "\n\tchain ", kPreroutingChain,
                  " {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump ",
                  kServicesChain, "\n\t}\n");
  absl::StrAppend(&out, "\n\tchain ", kOutputChain,
                  " {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump ",
                  kServicesChain, "\n\t}\n");
  for (const auto& [name, chain] : rs.chains) {
    absl::StrAppend(&out, "\n\tchain ", name, " {\n");
    for (const DnatRule& r : chain.rules) absl::StrAppend(&out, "\t\t", RenderRule(r), "\n");
    absl::StrAppend(&out, "\t}\n");
  }
  out += "}\n";
  return out;
}

}  // namespace nftproxy::dp
