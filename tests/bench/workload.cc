#include "tests/bench/workload.h"

#include <cstdio>

namespace npxbench {

uint32_t Ip4(int a, int b, int c, int d) {
  return (static_cast<uint32_t>(a) << 24) | (static_cast<uint32_t>(b) << 16) | (static_cast<uint32_t>(c) << 8) |
         static_cast<uint32_t>(d);
}

std::string Ip4(uint32_t a) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  return buf;
}

std::string Workload::Namespace(int i) const {
  if (namespaces <= 1) return "bench";
  return "bench-" + std::to_string(i % namespaces);
}

std::string Workload::Name(int i) const {
  char buf[24];
  snprintf(buf, sizeof(buf), "svc-%06d", i);
  return buf;
}

uint32_t Workload::Vip(int i) const {
  if (i < 65534) return Ip4(198, 19, 0, 1) + static_cast<uint32_t>(i);
  return Ip4(198, 18, 16, 1) + static_cast<uint32_t>(i - 65534);
}

uint32_t Workload::Endpoint(int i, int j) const {
  if (dataplane) return Ip4(198, 18, 2, 1) + static_cast<uint32_t>(j);
  const uint64_t k = static_cast<uint64_t>(i) * static_cast<uint64_t>(endpoints + 1) + static_cast<uint64_t>(j);
  return Ip4(198, 18, 0, 2) + static_cast<uint32_t>(k % 4000);
}

std::vector<std::string> Workload::ServiceCidrs() const {
  std::vector<std::string> c = {"198.19.0.0/16"};
  if (services > 65534) {
    for (const char* s : {"198.18.16.0/20", "198.18.32.0/19", "198.18.64.0/18", "198.18.128.0/17"}) c.push_back(s);
  }
  return c;
}

}  // namespace npxbench
