#include "tests/bench/kube_shapes.h"

#include <string>

namespace npxbench {
namespace {

constexpr char kTable[] = "ip kube-proxy";
constexpr char kMasqMark[] = "0x4000";

// 16 upper-case base32 characters of a stable hash, like kube-proxy's
// base32(sha256(...)) chain-name suffixes (the hash function differs; only
// the shape and length of the names matter here).
std::string Hash16(const std::string& s) {
  uint64_t h1 = 1469598103934665603ull, h2 = 0x9e3779b97f4a7c15ull;
  for (unsigned char c : s) {
    h1 = (h1 ^ c) * 1099511628211ull;
    h2 = (h2 ^ c) * 0x100000001b3ull + (h2 >> 29);
  }
  const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out(16, 'A');
  for (int i = 0; i < 16; ++i) {
    const uint64_t v = i < 12 ? h1 >> (5 * i) : h2 >> (5 * (i - 12));
    out[i] = alphabet[v & 31];
  }
  return out;
}

std::string SvcPortName(const Workload& w, int i) { return w.Namespace(i) + "/" + w.Name(i) + ":p80"; }

std::string EndpointStr(const Workload& w, int i, int j) {
  return Ip4(w.Endpoint(i, j)) + ":" + std::to_string(w.target_port);
}

// ---- nftables -----------------------------------------------------------

std::string NftServiceChain(const Workload& w, int i) {
  return "service-" + Hash16(SvcPortName(w, i) + "tcp").substr(0, 8) + "-" + w.Namespace(i) + "/" + w.Name(i) +
         "/tcp/p80";
}

std::string NftEndpointChain(const Workload& w, int i, int j) {
  const std::string ep = Ip4(w.Endpoint(i, j)) + "/" + std::to_string(w.target_port);
  return "endpoint-" + Hash16(SvcPortName(w, i) + "tcp" + ep).substr(0, 8) + "-" + w.Namespace(i) + "/" +
         w.Name(i) + "/tcp/p80__" + ep;
}

void WriteNftBase(const Workload& w, FILE* f) {
  fprintf(f, "add table %s { comment \"rules for kube-proxy\" ; }\n", kTable);
  fprintf(f, "add set %s cluster-ips { type ipv4_addr ; comment \"Active ClusterIPs\" ; }\n", kTable);
  fprintf(f, "add set %s nodeport-ips { type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }\n", kTable);
  const char* maps[][2] = {
      {"firewall-ips", "ipv4_addr . inet_proto . inet_service : verdict"},
      {"no-endpoint-nodeports", "inet_proto . inet_service : verdict"},
      {"no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict"},
      {"service-ips", "ipv4_addr . inet_proto . inet_service : verdict"},
      {"service-nodeports", "inet_proto . inet_service : verdict"},
  };
  for (const auto& m : maps) fprintf(f, "add map %s %s { type %s ; }\n", kTable, m[0], m[1]);
  const char* chains[][2] = {
      {"cluster-ips-check", ""},
      {"filter-prerouting-pre-dnat", "{ type filter hook prerouting priority -110 ; }"},
      {"filter-output-pre-dnat", "{ type filter hook output priority -110 ; }"},
      {"filter-forward", "{ type filter hook forward priority 0 ; }"},
      {"filter-input", "{ type filter hook input priority 0 ; }"},
      {"filter-output", "{ type filter hook output priority 0 ; }"},
      {"firewall-check", ""},
      {"mark-for-masquerade", ""},
      {"masquerading", ""},
      {"nat-output", "{ type nat hook output priority -100 ; }"},
      {"nat-postrouting", "{ type nat hook postrouting priority 100 ; }"},
      {"nat-prerouting", "{ type nat hook prerouting priority -100 ; }"},
      {"nodeport-endpoints-check", ""},
      {"reject-chain", ""},
      {"services", ""},
      {"service-endpoints-check", ""},
  };
  for (const auto& c : chains) fprintf(f, "add chain %s %s %s\n", kTable, c[0], c[1]);
  for (const auto& c : chains) fprintf(f, "flush chain %s %s\n", kTable, c[0]);
  std::string cidrs;
  for (const std::string& c : w.ServiceCidrs()) cidrs += (cidrs.empty() ? "" : ", ") + c;
  const std::string rules[] = {
      "cluster-ips-check ip daddr @cluster-ips reject",
      "cluster-ips-check ip daddr { " + cidrs + " } drop",
      "filter-prerouting-pre-dnat ct state new jump firewall-check",
      "filter-forward ct state new jump service-endpoints-check",
      "filter-forward ct state new jump cluster-ips-check",
      "filter-input ct state new jump nodeport-endpoints-check",
      "filter-input ct state new jump service-endpoints-check",
      "filter-output ct state new jump service-endpoints-check",
      "filter-output-pre-dnat ct state new jump firewall-check",
      "filter-output ct state new jump cluster-ips-check",
      "firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
      std::string("mark-for-masquerade mark set mark or ") + kMasqMark,
      std::string("masquerading mark and ") + kMasqMark + " == 0 return",
      std::string("masquerading mark set mark xor ") + kMasqMark,
      "masquerading masquerade fully-random",
      "nat-output jump services",
      "nat-postrouting jump masquerading",
      "nat-prerouting jump services",
      "nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
      "reject-chain reject",
      "services ip daddr . meta l4proto . th dport vmap @service-ips",
      "services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
      "service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
  };
  for (const std::string& r : rules) fprintf(f, "add rule %s %s\n", kTable, r.c_str());
  // A full sync rebuilds the sets and maps.
  fprintf(f, "flush set %s cluster-ips\n", kTable);
  for (const auto& m : maps) fprintf(f, "flush map %s %s\n", kTable, m[0]);
}

void WriteNftService(const Workload& w, int i, const std::vector<int>& eps, FILE* f) {
  const std::string svc = NftServiceChain(w, i);
  const std::string vip = Ip4(w.Vip(i));
  std::vector<std::string> ep_chains;
  for (int j : eps) ep_chains.push_back(NftEndpointChain(w, i, j));
  for (const std::string& c : ep_chains) fprintf(f, "add chain %s %s\nflush chain %s %s\n", kTable, c.c_str(), kTable, c.c_str());
  fprintf(f, "add chain %s %s\nflush chain %s %s\n", kTable, svc.c_str(), kTable, svc.c_str());
  fprintf(f, "add rule %s %s ip daddr %s tcp dport %u ip saddr != %s jump mark-for-masquerade\n", kTable, svc.c_str(),
          vip.c_str(), w.port, kClusterCidr);
  fprintf(f, "add rule %s %s numgen random mod %zu vmap { ", kTable, svc.c_str(), eps.size());
  for (size_t k = 0; k < ep_chains.size(); ++k) {
    fprintf(f, "%s%zu : goto %s", k ? " , " : "", k, ep_chains[k].c_str());
  }
  fprintf(f, " }\n");
  for (size_t k = 0; k < eps.size(); ++k) {
    const char* c = ep_chains[k].c_str();
    fprintf(f, "add rule %s %s ip saddr %s jump mark-for-masquerade\n", kTable, c, Ip4(w.Endpoint(i, eps[k])).c_str());
    fprintf(f, "add rule %s %s meta l4proto tcp dnat to %s\n", kTable, c, EndpointStr(w, i, eps[k]).c_str());
  }
}

// ---- iptables -----------------------------------------------------------

std::string SvcChain(const Workload& w, int i) { return "KUBE-SVC-" + Hash16(SvcPortName(w, i) + "tcp"); }
std::string SepChain(const Workload& w, int i, int j) {
  return "KUBE-SEP-" + Hash16(SvcPortName(w, i) + "tcp" + EndpointStr(w, i, j));
}

void WriteServicesRule(const Workload& w, int i, FILE* f) {
  fprintf(f,
          "-A KUBE-SERVICES -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %u -j %s\n",
          SvcPortName(w, i).c_str(), Ip4(w.Vip(i)).c_str(), w.port, SvcChain(w, i).c_str());
}

void WriteSvcAndSepRules(const Workload& w, int i, const std::vector<int>& eps, FILE* f) {
  const std::string name = SvcPortName(w, i);
  const std::string svc = SvcChain(w, i);
  fprintf(f,
          "-A %s -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %u ! -s %s -j KUBE-MARK-MASQ\n",
          svc.c_str(), name.c_str(), Ip4(w.Vip(i)).c_str(), w.port, kClusterCidr);
  const size_t n = eps.size();
  for (size_t k = 0; k < n; ++k) {
    const std::string ep = EndpointStr(w, i, eps[k]);
    if (k + 1 < n) {
      fprintf(f, "-A %s -m comment --comment \"%s -> %s\" -m statistic --mode random --probability %0.10f -j %s\n",
              svc.c_str(), name.c_str(), ep.c_str(), 1.0 / static_cast<double>(n - k), SepChain(w, i, eps[k]).c_str());
    } else {
      fprintf(f, "-A %s -m comment --comment \"%s -> %s\" -j %s\n", svc.c_str(), name.c_str(), ep.c_str(),
              SepChain(w, i, eps[k]).c_str());
    }
  }
  for (int j : eps) {
    const std::string sep = SepChain(w, i, j);
    fprintf(f, "-A %s -m comment --comment %s -s %s/32 -j KUBE-MARK-MASQ\n", sep.c_str(), name.c_str(),
            Ip4(w.Endpoint(i, j)).c_str());
    fprintf(f, "-A %s -m comment --comment %s -m tcp -p tcp -j DNAT --to-destination %s\n", sep.c_str(), name.c_str(),
            EndpointStr(w, i, j).c_str());
  }
}

const char kNodePortsRule[] =
    "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in "
    "this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";

// kube-proxy writes its filter chains on every sync, full or partial.
void WriteFilterTable(bool with_builtins, FILE* f) {
  fprintf(f, "*filter\n");
  if (with_builtins) fprintf(f, ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
  fprintf(f,
          ":KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n"
          ":KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n");
  if (with_builtins) {
    fprintf(f,
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
            "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n"
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
            "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
            "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
            "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
  }
  fprintf(f,
          "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
          "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark %s/%s -j ACCEPT\n"
          "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
          "COMMIT\n",
          kMasqMark, kMasqMark);
}

std::vector<int> FirstEndpoints(const Workload& w) {
  std::vector<int> eps;
  for (int j = 0; j < w.endpoints; ++j) eps.push_back(j);
  return eps;
}

}  // namespace

void WriteKubeNftFull(const Workload& w, FILE* f) {
  WriteNftBase(w, f);
  const std::vector<int> eps = FirstEndpoints(w);
  for (int i = 0; i < w.services; ++i) WriteNftService(w, i, eps, f);
  for (int i = 0; i < w.services; ++i) {
    const std::string vip = Ip4(w.Vip(i));
    fprintf(f, "add element %s cluster-ips { %s }\n", kTable, vip.c_str());
    fprintf(f, "add element %s service-ips { %s . tcp . %u : goto %s }\n", kTable, vip.c_str(), w.port,
            NftServiceChain(w, i).c_str());
  }
}

void WriteKubeNftChange(const Workload& w, int svc, const std::vector<int>& eps, int removed, FILE* f) {
  WriteNftService(w, svc, eps, f);
  if (removed >= 0) {
    const std::string c = NftEndpointChain(w, svc, removed);
    fprintf(f, "flush chain %s %s\ndelete chain %s %s\n", kTable, c.c_str(), kTable, c.c_str());
  }
}

void WriteIptablesFull(const Workload& w, FILE* f) {
  WriteFilterTable(true, f);
  fprintf(f, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
  fprintf(f, ":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
  const std::vector<int> eps = FirstEndpoints(w);
  for (int i = 0; i < w.services; ++i) {
    fprintf(f, ":%s - [0:0]\n", SvcChain(w, i).c_str());
    for (int j : eps) fprintf(f, ":%s - [0:0]\n", SepChain(w, i, j).c_str());
  }
  fprintf(f,
          "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
          "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
          "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
          "-A KUBE-POSTROUTING -m mark ! --mark %s/%s -j RETURN\n"
          "-A KUBE-POSTROUTING -j MARK --xor-mark %s\n"
          "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"
          "-A KUBE-MARK-MASQ -j MARK --or-mark %s\n",
          kMasqMark, kMasqMark, kMasqMark, kMasqMark);
  for (int i = 0; i < w.services; ++i) WriteServicesRule(w, i, f);
  fprintf(f, "%s", kNodePortsRule);
  for (int i = 0; i < w.services; ++i) WriteSvcAndSepRules(w, i, eps, f);
  fprintf(f, "COMMIT\n");
}

void WriteIptablesChange(const Workload& w, int svc, const std::vector<int>& eps, int removed, FILE* f) {
  WriteFilterTable(false, f);
  fprintf(f, "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
  fprintf(f, ":%s - [0:0]\n", SvcChain(w, svc).c_str());
  for (int j : eps) fprintf(f, ":%s - [0:0]\n", SepChain(w, svc, j).c_str());
  if (removed >= 0) fprintf(f, ":%s - [0:0]\n", SepChain(w, svc, removed).c_str());
  fprintf(f,
          "-A KUBE-POSTROUTING -m mark ! --mark %s/%s -j RETURN\n"
          "-A KUBE-POSTROUTING -j MARK --xor-mark %s\n"
          "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"
          "-A KUBE-MARK-MASQ -j MARK --or-mark %s\n",
          kMasqMark, kMasqMark, kMasqMark, kMasqMark);
  for (int i = 0; i < w.services; ++i) WriteServicesRule(w, i, f);
  fprintf(f, "%s", kNodePortsRule);
  WriteSvcAndSepRules(w, svc, eps, f);
  if (removed >= 0) fprintf(f, "-X %s\n", SepChain(w, svc, removed).c_str());
  fprintf(f, "COMMIT\n");
}

}  // namespace npxbench
