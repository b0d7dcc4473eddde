// The benchmark workload: N ClusterIP services (TCP port 80 -> 8080) with E
// endpoints each, the same for nftproxy and for the kube-proxy shapes.
//
// Addresses (only 198.18.0.0/15 is used):
//   VIPs                 198.19.0.1 + i for i < 65534, then 198.18.16.1 + ...
//                        (126,974 services at most)
//   control-plane eps    198.18.0.2 .. 198.18.15.161, shared round robin; the
//                        control-plane namespace routes 198.18.0.0/20 to lo so
//                        that connections to any VIP can be checked there
//   data-plane eps       198.18.2.1 .. 198.18.2.(E+1): addresses of the backend
//                        namespace
#ifndef NFTPROXY_TESTS_BENCH_WORKLOAD_H_
#define NFTPROXY_TESTS_BENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

namespace npxbench {

constexpr int kMaxServices = 65534 + 61439;

struct Workload {
  int services = 0;
  int endpoints = 10;   // per service, before single changes
  int namespaces = 1;   // services are spread round robin over this many
  bool dataplane = false;
  uint16_t port = 80;
  uint16_t target_port = 8080;

  std::string Namespace(int i) const;
  std::string Name(int i) const;     // svc-000042
  uint32_t Vip(int i) const;
  // Endpoint j of service i; j == endpoints is the extra endpoint that the
  // single-change workload adds and removes.
  uint32_t Endpoint(int i, int j) const;
  // CIDRs covering every VIP (kube-proxy's --service-cluster-ip-range).
  std::vector<std::string> ServiceCidrs() const;
};

// The cluster (pod) CIDR: sources inside are not masqueraded by the
// kube-proxy shapes. Contains every endpoint and the data-plane client.
inline constexpr char kClusterCidr[] = "198.18.0.0/16";

std::string Ip4(uint32_t a);
uint32_t Ip4(int a, int b, int c, int d);

}  // namespace npxbench

#endif  // NFTPROXY_TESTS_BENCH_WORKLOAD_H_
