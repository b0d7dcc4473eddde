// Shared fixtures of the dataplane unit tests.
#pragma once

#include <map>
#include <string>

#include "dataplane/ruleset.h"

namespace nftproxy::dp::testing {

inline IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

inline Service Web() {
  Service s;
  s.ns = "default";
  s.name = "web";
  s.cluster_ips = {Ip("198.19.0.10"), Ip("fd00:96::10")};
  ServicePort http;
  http.name = "http";
  http.port = 80;
  http.backends = {{Ip("198.18.10.2"), 8080, 1}, {Ip("198.18.11.2"), 8080, 1},
                   {Ip("198.18.12.2"), 8080, 1}, {Ip("fd00:10::2"), 8080, 1}};
  ServicePort dns;
  dns.name = "dns";
  dns.proto = L4Proto::kUdp;
  dns.port = 53;
  dns.backends = {{Ip("198.18.10.2"), 5353, 1}};
  s.ports = {http, dns};
  return s;
}

inline std::string Text(const Ruleset& rs, const std::string& chain) {
  std::string out;
  const std::string all = Render(rs);
  const size_t at = all.find("\tchain " + chain + " {\n");
  if (at == std::string::npos) return "<no chain " + chain + ">";
  return all.substr(at, all.find("\t}\n", at) + 3 - at);
}

// Tickets of one service port, summed per backend address.
inline std::map<std::string, uint32_t> Shares(const Ruleset& rs, Family f, uint32_t first_ticket) {
  std::map<std::string, uint32_t> out;
  const auto& m = rs.backends[f == Family::kV4 ? 0 : 1];
  for (auto it = m.lower_bound(first_ticket); it != m.end() && it->first < first_ticket + kBuckets; ++it) {
    out[it->second.addr.ToString()] += it->second.last - it->first + 1;
  }
  return out;
}

}  // namespace nftproxy::dp::testing
