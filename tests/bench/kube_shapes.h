// kube-proxy's two rulesets for a Workload, as the text its nftables mode
// hands to `nft -f` and its iptables mode hands to `iptables-restore`.
//
// Modelled on kubernetes/pkg/proxy/{nftables,iptables}/proxier.go for
// ClusterIP services with cluster traffic policy, a cluster CIDR (so the
// "masquerade off-cluster traffic" rule is present) and no affinity:
//
// nftables (table ip kube-proxy):
//   services: ip daddr . meta l4proto . th dport vmap @service-ips
//   service-XXXX-ns/svc/tcp/p80:
//       ip daddr VIP tcp dport 80 ip saddr != CIDR jump mark-for-masquerade
//       numgen random mod N vmap { 0 : goto endpoint-..., ... }
//   endpoint-XXXX-ns/svc/tcp/p80__IP/8080:
//       ip saddr IP jump mark-for-masquerade
//       meta l4proto tcp dnat to IP:8080
//   plus the fixed base chains, sets and maps of the real proxier. Every
//   service and endpoint chain is written "add chain; flush chain", as
//   knftables does, so the same text reloads over itself.
//
// iptables (nat + filter tables): KUBE-SERVICES with one rule per service,
// KUBE-SVC-* with statistic-mode-random rules, KUBE-SEP-* with DNAT.
//
// Single changes are written the way each proxier's partial sync writes
// them: kube-proxy nftables rewrites only the changed service's chains (and
// flushes and deletes a removed endpoint's chain); kube-proxy iptables
// rewrites the changed service's chains AND, as it always does, the whole
// KUBE-SERVICES chain, loaded with `iptables-restore --noflush`.
#ifndef NFTPROXY_TESTS_BENCH_KUBE_SHAPES_H_
#define NFTPROXY_TESTS_BENCH_KUBE_SHAPES_H_

#include <cstdio>
#include <vector>

#include "tests/bench/workload.h"

namespace npxbench {

void WriteKubeNftFull(const Workload& w, FILE* out);
// One service rewritten with endpoints `eps`; `removed` (or -1) is the index
// of an endpoint whose chain goes away.
void WriteKubeNftChange(const Workload& w, int svc, const std::vector<int>& eps, int removed, FILE* out);

void WriteIptablesFull(const Workload& w, FILE* out);
void WriteIptablesChange(const Workload& w, int svc, const std::vector<int>& eps, int removed, FILE* out);

}  // namespace npxbench

#endif  // NFTPROXY_TESTS_BENCH_KUBE_SHAPES_H_
