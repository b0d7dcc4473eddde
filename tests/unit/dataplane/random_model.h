// Random but valid dataplane models for randomized tests: services live in
// numbered slots whose ports and node ports are disjoint from every other
// slot's, so frontends never collide, while addresses come from small shared
// pools (services share cluster, external and LB addresses, and endpoints).
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/model.h"

namespace nftproxy::dp::testing {

class RandomModel {
 public:
  explicit RandomModel(uint64_t seed, int slots) : rng_(seed), slots_(slots) {}

  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(0, 99) < percent; }

  static IpAddr V4(uint32_t a) {
    IpAddr ip;
    ip.family = Family::kV4;
    for (int i = 0; i < 4; ++i) ip.bytes[i] = static_cast<uint8_t>(a >> (24 - 8 * i));
    return ip;
  }
  // fdXX:: prefix `hi` (two bytes) with a small host part.
  static IpAddr V6(uint16_t hi, uint16_t mid, uint32_t low) {
    IpAddr ip;
    ip.family = Family::kV6;
    ip.bytes[0] = static_cast<uint8_t>(hi >> 8);
    ip.bytes[1] = static_cast<uint8_t>(hi);
    ip.bytes[2] = static_cast<uint8_t>(mid >> 8);
    ip.bytes[3] = static_cast<uint8_t>(mid);
    for (int i = 0; i < 4; ++i) ip.bytes[12 + i] = static_cast<uint8_t>(low >> (24 - 8 * i));
    return ip;
  }

  std::string SlotKey(int slot) const { return absl::StrCat("ns", slot % 3, "/s", slot); }

  // A fresh random service for `slot`.
  Service Make(int slot) {
    Service s;
    s.ns = absl::StrCat("ns", slot % 3);
    s.name = absl::StrCat("s", slot);
    Addresses(&s);
    const int nports = Int(1, 3);
    std::set<std::pair<L4Proto, uint16_t>> seen;
    for (int i = 0; i < nports; ++i) {
      ServicePort p;
      p.proto = Proto();
      p.port = static_cast<uint16_t>(1000 + slot * 4 + Int(0, 3));
      if (!seen.insert({p.proto, p.port}).second) continue;
      p.name = absl::StrCat("p", i);
      if (Chance(30)) p.node_port = static_cast<uint16_t>(30000 + slot * 4 + i);
      Backends(&p);
      s.ports.push_back(std::move(p));
    }
    Knobs(&s);
    return s;
  }

  // `s` with one random thing changed (mostly endpoints, as in real life).
  Service Mutate(Service s, int slot) {
    const int what = Int(0, 9);
    if (what <= 4 && !s.ports.empty()) {
      Backends(&s.ports[Int(0, static_cast<int>(s.ports.size()) - 1)]);
    } else if (what == 5 && !s.ports.empty()) {
      ServicePort& p = s.ports[Int(0, static_cast<int>(s.ports.size()) - 1)];
      const int i = static_cast<int>(&p - s.ports.data());
      p.node_port = p.node_port ? 0 : static_cast<uint16_t>(30000 + slot * 4 + std::min(i, 3));
    } else if (what == 6) {
      Addresses(&s);
    } else if (what == 7) {
      Knobs(&s);
    } else if (what == 8 && !s.ports.empty()) {
      for (Backend& b : s.ports[0].backends) {
        if (Chance(50)) b.weight = static_cast<uint32_t>(Int(0, 5));
        if (Chance(30)) b.local = !b.local;
      }
    } else {
      s = Make(slot);
    }
    return s;
  }

  NodeSettings Node() {
    NodeSettings n;
    if (Chance(50)) {
      n.cluster_cidrs = {Cidr{V4(0x0a000000u), 16}, Cidr{V6(0xfd00, 0x10, 0), 64}};
      if (Chance(50)) n.cluster_cidrs.push_back(Cidr{V4(0x0a630007u), 24});  // host bits set
    }
    if (Chance(30)) n.nodeport_cidrs = {Cidr{V4(0xc0000200u), 24}};
    if (Chance(20)) n.nodeport_cidrs.push_back(Cidr{V6(0x2001, 0xdb8, 0), 64});
    n.counters = Chance(70);
    n.endpoint_counters = Chance(70);
    return n;
  }

  int slots() const { return slots_; }

 private:
  L4Proto Proto() {
    const int p = Int(0, 9);
    return p < 6 ? L4Proto::kTcp : p < 9 ? L4Proto::kUdp : L4Proto::kSctp;
  }

  void Addresses(Service* s) {
    s->cluster_ips.clear();
    s->external_ips.clear();
    s->lb_ips.clear();
    s->lb_source_ranges.clear();
    // Mostly one v4 cluster IP; sometimes dual stack, sometimes none
    // (NodePort-only ports still get objects through their endpoints).
    if (Chance(90)) s->cluster_ips.push_back(V4(0xc6130000u + static_cast<uint32_t>(Int(1, 40))));
    if (Chance(30)) s->cluster_ips.push_back(V6(0xfd00, 0x96, static_cast<uint32_t>(Int(1, 20))));
    if (Chance(15)) s->external_ips.push_back(V4(0xcb007100u + static_cast<uint32_t>(Int(1, 10))));
    if (Chance(15)) {
      s->lb_ips.push_back(V4(0xc6336400u + static_cast<uint32_t>(Int(1, 10))));
      if (Chance(30)) s->lb_ips.push_back(V6(0x2001, 0xdb8, static_cast<uint32_t>(Int(1, 5))));
      if (Chance(50)) {
        s->lb_source_ranges.push_back(Cidr{V4(0xc0a80000u + static_cast<uint32_t>(Int(0, 255))), Int(16, 32)});
        if (Chance(30)) s->lb_source_ranges.push_back(Cidr{V6(0xfd00, 0x77, 0x1234), Int(48, 128)});
      }
    }
  }

  void Backends(ServicePort* p) {
    p->backends.clear();
    const int n = Chance(10) ? 0 : Int(1, 6);
    std::set<std::pair<IpAddr, uint16_t>> seen;
    for (int i = 0; i < n; ++i) {
      Backend b;
      b.addr = Chance(75) ? V4(0x0a000000u + static_cast<uint32_t>(Int(1, 60)))
                          : V6(0xfd00, 0x10, static_cast<uint32_t>(Int(1, 30)));
      b.port = static_cast<uint16_t>(Chance(80) ? 8080 : 9090);
      if (!seen.insert({b.addr, b.port}).second) continue;
      b.weight = Chance(80) ? 1 : static_cast<uint32_t>(Chance(20) ? 0 : Int(1, 100));
      b.local = Chance(30);
      p->backends.push_back(b);
    }
  }

  void Knobs(Service* s) {
    const int lb = Int(0, 9);
    s->lb = lb < 7 ? LbMode::kRandom : lb < 9 ? LbMode::kRoundRobin : LbMode::kSourceHash;
    s->external_policy = Chance(30) ? Policy::kLocal : Policy::kCluster;
    s->internal_policy = Chance(15) ? Policy::kLocal : Policy::kCluster;
    s->affinity_timeout_s = Chance(15) ? static_cast<uint32_t>(Int(1, 20000)) : 0;
  }

  std::mt19937_64 rng_;
  int slots_;
};

}  // namespace nftproxy::dp::testing
