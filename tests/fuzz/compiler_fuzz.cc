// libFuzzer target: the dataplane compiler and both of its outputs. Every
// choice of a random but valid model (as the server would build it: see
// tests/unit/dataplane/random_model.h for the shapes) comes from the input
// through FuzzedDataProvider. Then:
//
//  1. The model compiles (dataplane/compile.cc), with fresh or given
//     service-port indexes, and every ticket range works as promised: each
//     per-service rule's numgen/jhash range [offset, offset + modulus) is
//     tiled exactly by backends-map intervals of one shard, whose endpoints
//     are the eligible backends (weight > 0, of the family, local ones for
//     a LOCAL policy chain), each with at least one bucket.
//  2. Its netlink form (NftWriter's full commit, over a socket that hands
//     the batch to NftKernel, tests/fuzz/nft_kernel.h) is a batch the kernel
//     takes, and decoded back to `nft list` terms it equals its text form
//     (render.cc), object by object.
//  3. The incremental dataplane (NftDataplane over the same NftWriter)
//     applies the model and a few random changes of it; after each, the
//     table the batches built equals the text of a fresh compile of the
//     model with the dataplane's indexes, and the dataplane's own text.
//
// Any disagreement or refused batch aborts with the difference.
#include <fuzzer/FuzzedDataProvider.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/conntrack.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/nft_dataplane.h"
#include "dataplane/nft_writer.h"
#include "dataplane/ruleset.h"
#include "tests/fuzz/nft_kernel.h"

namespace nftproxy::fuzz {
namespace {

using dp::Backend;
using dp::Cidr;
using dp::Family;
using dp::IpAddr;
using dp::L4Proto;
using dp::Model;
using dp::Service;
using dp::ServicePort;

[[noreturn]] void Finding(const std::string& what) {
  fprintf(stderr, "FINDING: %s\n", what.c_str());
  abort();
}

IpAddr Ip(const char* text) {
  auto ip = IpAddr::Parse(text);
  if (!ip.ok()) Finding(std::string("bad address in the generator: ") + text);
  return *ip;
}

// ---- the model, from the input ------------------------------------------------

class Gen {
 public:
  explicit Gen(FuzzedDataProvider& p) : p_(p) {}

  int Int(int lo, int hi) { return p_.ConsumeIntegralInRange<int>(lo, hi); }
  bool Chance(int percent) { return Int(0, 99) < percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(Int(0, static_cast<int>(v.size()) - 1))];
  }

  dp::NodeSettings Node() {
    // Any CIDRs serve's --cluster-cidr and --nodeport-addresses accept.
    static const std::vector<std::string> kCidrs = {
        "10.0.0.0/16", "10.0.0.0/16", "10.1.2.3/16", "10.0.0.0/8",  "10.0.5.0/24", "0.0.0.0/0", "192.0.2.0/24",
        "192.0.2.7/32", "fd00:10::/64", "fd00::/8",  "::/0",         "2001:db8::/64", "255.255.255.255/32",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"};
    dp::NodeSettings n;
    for (int i = Int(0, 3); i > 0; --i) n.cluster_cidrs.push_back(*Cidr::Parse(Pick(kCidrs)));
    for (int i = Int(0, 2); i > 0; --i) n.nodeport_cidrs.push_back(*Cidr::Parse(Pick(kCidrs)));
    // One byte for both (bit 0 as before, so that older inputs keep their
    // counters): endpoint counters also without counters, which the
    // compiler ignores then (NormalizedNode), as serve never sends.
    const int counters = Int(0, 3);
    n.counters = (counters & 1) != 0;
    n.endpoint_counters = (counters & 2) != 0;
    return n;
  }

  // A service for `slot` (its key is fixed by the slot) whose frontends and
  // node ports are not in `claims` (the other services'), as validation
  // ensures.
  struct Claims {
    std::set<std::tuple<IpAddr, L4Proto, uint16_t>> frontends;
    std::set<std::pair<L4Proto, uint16_t>> node_ports;
  };
  static void Claim(const Service& s, Claims* c) {
    for (const ServicePort& p : s.ports) {
      for (const auto* list : {&s.cluster_ips, &s.external_ips, &s.lb_ips}) {
        for (const IpAddr& ip : *list) c->frontends.insert({ip, p.proto, p.port});
      }
      if (p.node_port) c->node_ports.insert({p.proto, p.node_port});
    }
  }

  static std::string Ns(int slot) {
    static const char* const kNs[] = {"default", "ns1", "kube-system",
                                      "a-namespace-of-sixty-three-characters-which-is-the-longest-one"};
    return kNs[slot % 4];
  }
  static std::string Name(int slot) {
    std::string n = absl::StrCat("s", slot);
    if (slot % 5 == 4) n.append(63 - n.size(), 'x');  // the longest name
    return n;
  }

  Service Make(int slot, const Claims& others) {
    Service s;
    s.ns = Ns(slot);
    s.name = Name(slot);
    static const std::vector<std::string> kV4 = {"198.19.0.10", "198.19.0.11", "198.19.0.12", "1.0.0.0",
                                                 "223.255.255.255", "255.255.255.254"};
    static const std::vector<std::string> kV6 = {"fd00:96::10", "fd00:96::11", "2001:db8::ffff:ffff", "::2",
                                                 "fe80::1"};
    static const std::vector<std::string> kExt4 = {"203.0.113.1", "203.0.113.2", "198.19.0.10"};
    static const std::vector<std::string> kExt6 = {"2001:db8:1::1", "fd00:96::10"};
    static const std::vector<std::string> kLb4 = {"198.51.100.1", "198.51.100.2"};
    static const std::vector<std::string> kLb6 = {"2001:db8:2::1"};
    static const std::vector<std::string> kRanges = {"192.168.0.0/16", "192.168.1.7/24", "0.0.0.0/0", "10.0.0.1/32",
                                                     "fd00:77::1234/48", "::/0", "2001:db8::1/128", "10.0.0.0/8"};
    // At most one cluster IP per family (validation); sometimes none.
    if (Chance(85)) s.cluster_ips.push_back(Ip(Pick(kV4).c_str()));
    if (Chance(30)) s.cluster_ips.push_back(Ip(Pick(kV6).c_str()));
    auto some = [&](const std::vector<std::string>& pool, int max, std::vector<IpAddr>* out) {
      std::set<IpAddr> seen;
      for (int i = Int(0, max); i > 0; --i) {
        IpAddr ip = Ip(Pick(pool).c_str());
        if (seen.insert(ip).second) out->push_back(ip);
      }
    };
    if (Chance(25)) some(kExt4, 2, &s.external_ips);
    if (Chance(10)) some(kExt6, 1, &s.external_ips);
    if (Chance(25)) {
      some(kLb4, 2, &s.lb_ips);
      if (Chance(30)) some(kLb6, 1, &s.lb_ips);
      for (int i = Int(0, 3); i > 0; --i) s.lb_source_ranges.push_back(*Cidr::Parse(Pick(kRanges)));
    }
    static const std::vector<uint16_t> kPorts = {80, 443, 53, 1, 65535, 8080};
    std::set<std::pair<L4Proto, uint16_t>> own;
    Claims mine;
    for (int i = Int(1, 4); i > 0; --i) {
      ServicePort p;
      p.proto = Proto();
      p.port = Pick(kPorts);
      p.name = absl::StrCat("p", i);
      if (!own.insert({p.proto, p.port}).second) continue;
      bool clash = false;
      for (const auto* list : {&s.cluster_ips, &s.external_ips, &s.lb_ips}) {
        for (const IpAddr& ip : *list) {
          clash |= others.frontends.count({ip, p.proto, p.port}) > 0 || mine.frontends.count({ip, p.proto, p.port}) > 0;
        }
      }
      if (clash) continue;
      if (Chance(30)) {
        const uint16_t np = static_cast<uint16_t>(30000 + Int(0, 9));
        if (!others.node_ports.count({p.proto, np}) && !mine.node_ports.count({p.proto, np})) p.node_port = np;
      }
      Backends(&p);
      Service one;
      one.cluster_ips = s.cluster_ips;
      one.external_ips = s.external_ips;
      one.lb_ips = s.lb_ips;
      one.ports.push_back(p);
      Claim(one, &mine);
      s.ports.push_back(std::move(p));
    }
    if (s.ports.empty()) {
      // Every port clashed: a port no one else has (> 65535 - 16 is never picked above).
      ServicePort p;
      p.port = static_cast<uint16_t>(65535 - 1 - slot % 16);
      p.proto = L4Proto::kSctp;
      p.name = "last";
      Backends(&p);
      s.ports.push_back(std::move(p));
    }
    Knobs(&s);
    return s;
  }

  void Backends(ServicePort* p) {
    static const std::vector<std::string> kB4 = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1",
                                                 "255.255.255.254", "1.2.3.4"};
    static const std::vector<std::string> kB6 = {"fd00:10::1", "fd00:10::2", "2001:db8::ffff:ffff", "::2"};
    p->backends.clear();
    const int n = Chance(10) ? 0 : Int(1, 8);
    for (int i = 0; i < n; ++i) {
      Backend b;
      b.addr = Ip((Chance(70) ? Pick(kB4) : Pick(kB6)).c_str());
      b.port = static_cast<uint16_t>(Chance(80) ? 8080 : Chance(50) ? 1 : 65535);
      const int w = Int(0, 9);
      b.weight = w < 6 ? 1 : w == 6 ? 0 : w == 7 ? 10000 : static_cast<uint32_t>(Int(2, 100));
      b.local = Chance(30);
      p->backends.push_back(b);
    }
  }

  void Knobs(Service* s) {
    const int lb = Int(0, 9);
    s->lb = lb < 6 ? dp::LbMode::kRandom : lb < 8 ? dp::LbMode::kRoundRobin : dp::LbMode::kSourceHash;
    s->external_policy = Chance(30) ? dp::Policy::kLocal : dp::Policy::kCluster;
    s->internal_policy = Chance(20) ? dp::Policy::kLocal : dp::Policy::kCluster;
    const int a = Int(0, 9);
    s->affinity_timeout_s = a < 7 ? 0 : a == 7 ? 10800 : a == 8 ? 86400 : static_cast<uint32_t>(Int(1, 4000));
  }

  L4Proto Proto() {
    const int p = Int(0, 9);
    return p < 6 ? L4Proto::kTcp : p < 9 ? L4Proto::kUdp : L4Proto::kSctp;
  }

 private:
  FuzzedDataProvider& p_;
};

Model Sorted(std::map<std::string, Service> services, const dp::NodeSettings& node) {
  Model m;
  m.node = node;
  for (auto& [k, s] : services) m.services.push_back(std::move(s));
  return m;
}

// ---- the socket: batches go to the kernel model --------------------------------

class KernelSocket final : public dp::NetlinkSocket {
 public:
  explicit KernelSocket(NftKernel* kernel) : kernel_(kernel) {}
  absl::Status ReserveSend(size_t) override { return absl::OkStatus(); }
  ssize_t Send(const iovec* iov, size_t n) override {
    std::string batch;
    for (size_t i = 0; i < n; ++i) batch.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    // A dump request (the dataplane reading its table back to adopt it):
    // the model cannot list itself in netlink form, so it answers as a
    // kernel without the table does (ENOENT), and the dataplane replaces
    // the table whole, which the model checks.
    const auto* first = reinterpret_cast<const nlmsghdr*>(batch.data());
    if (batch.size() >= sizeof(nlmsghdr) && first->nlmsg_type != NFNL_MSG_BATCH_BEGIN &&
        (first->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP) {
      reply_.assign(NLMSG_SPACE(sizeof(nlmsgerr)), '\0');
      auto* h = reinterpret_cast<nlmsghdr*>(reply_.data());
      h->nlmsg_len = static_cast<uint32_t>(reply_.size());
      h->nlmsg_type = NLMSG_ERROR;
      h->nlmsg_seq = first->nlmsg_seq;
      auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
      err->error = -ENOENT;
      err->msg = *first;
      return static_cast<ssize_t>(batch.size());
    }
    if (absl::Status s = kernel_->Apply(batch); !s.ok()) {
      Finding("the kernel would refuse the batch of a valid model: " + std::string(s.message()) + "\nwhile " + *what);
    }
    return static_cast<ssize_t>(batch.size());
  }
  ssize_t Receive(void* buf, size_t len) override {
    if (reply_.empty()) {
      errno = EAGAIN;
      return -1;
    }
    const size_t n = std::min(len, reply_.size());
    memcpy(buf, reply_.data(), n);
    const ssize_t got = static_cast<ssize_t>(reply_.size());
    reply_.clear();
    return got;
  }
  const std::string* what = &kNothing;

 private:
  static inline const std::string kNothing = "(no step)";
  NftKernel* kernel_;
  std::string reply_;  // the answer to a dump request, until received
};

class NoFlows final : public dp::FlowFlusher {
 public:
  absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<dp::FlowTarget>& targets) override {
    return static_cast<int>(targets.size());
  }
};

std::string Describe(const Model& m) {
  std::string out = "node:";
  for (const Cidr& c : m.node.cluster_cidrs) absl::StrAppend(&out, " cluster ", c.ToString());
  for (const Cidr& c : m.node.nodeport_cidrs) absl::StrAppend(&out, " nodeport ", c.ToString());
  if (m.node.counters) absl::StrAppend(&out, " counters");
  if (m.node.endpoint_counters) absl::StrAppend(&out, " endpoint-counters");
  for (const Service& s : m.services) {
    absl::StrAppend(&out, "\n  ", s.Key(), " lb ", static_cast<int>(s.lb), " ext ", static_cast<int>(s.external_policy),
                    " int ", static_cast<int>(s.internal_policy), " aff ", s.affinity_timeout_s, " ips");
    for (const IpAddr& ip : s.cluster_ips) absl::StrAppend(&out, " ", ip.ToString());
    for (const IpAddr& ip : s.external_ips) absl::StrAppend(&out, " ext:", ip.ToString());
    for (const IpAddr& ip : s.lb_ips) absl::StrAppend(&out, " lb:", ip.ToString());
    for (const Cidr& c : s.lb_source_ranges) absl::StrAppend(&out, " src:", c.ToString());
    for (const ServicePort& p : s.ports) {
      absl::StrAppend(&out, "\n    ", dp::L4ProtoName(p.proto), "/", p.port, " np ", p.node_port, ":");
      for (const Backend& b : p.backends) {
        absl::StrAppend(&out, " ", b.addr.ToString(), ":", b.port, "w", b.weight, b.local ? "L" : "");
      }
    }
  }
  return out;
}

// The rendered text and the kernel's table agree.
void Agree(const NftKernel& kernel, const std::string& text, const std::string& what, const Model& m) {
  absl::StatusOr<TableListing> want = ParseListing(text);
  if (!want.ok()) Finding(std::string(want.status().message()));
  std::optional<TableListing> got = kernel.Listing();
  if (!got.has_value()) Finding("no table in the kernel after " + what);
  const std::string diff = Difference(*want, *got);
  if (!diff.empty()) {
    Finding("text (first) and netlink (second) disagree after " + what + ":\n" + diff + "model " + Describe(m));
  }
}

// ---- 1: what the tickets promise -------------------------------------------------

void CheckTickets(const Model& m, const dp::Ruleset& rs) {
  std::map<std::string, const ServicePort*> ports;  // "ns/name/proto/port"
  std::map<std::string, const Service*> services;
  for (const Service& s : m.services) {
    for (const ServicePort& p : s.ports) {
      const std::string key = absl::StrCat(s.ns, "/", s.name, "/", dp::L4ProtoName(p.proto), "/", p.port);
      ports[key] = &p;
      services[key] = &s;
    }
  }
  for (const auto& [name, chain] : rs.chains) {
    // "<kind><4|6>/ns/name/proto/port"
    const size_t slash = name.find('/');
    const std::string kind = name.substr(0, slash);
    const std::string key = name.substr(slash + 1);
    auto it = ports.find(key);
    if (it == ports.end()) Finding("chain " + name + " of no service port");
    const Family fam = kind.back() == '4' ? Family::kV4 : Family::kV6;
    const bool local = kind == "local4" || kind == "local6";
    for (const dp::Rule& r : chain.rules) {
      if (r.ticket != dp::Rule::Ticket::kRandom && r.ticket != dp::Rule::Ticket::kRoundRobin &&
          r.ticket != dp::Rule::Ticket::kSourceHash) {
        continue;
      }
      const uint64_t first = r.offset, last = uint64_t{r.offset} + r.modulus - 1;
      if (r.modulus == 0 || r.modulus > dp::kBuckets) Finding(absl::StrCat(name, ": modulus ", r.modulus));
      if (dp::ShardOfTicket(r.offset) != dp::ShardOfTicket(static_cast<uint32_t>(last))) {
        Finding(name + ": a ticket range across shards");
      }
      if (((r.offset & dp::kLocalBit) != 0) != local) Finding(name + ": the local bit does not match the chain");
      std::set<std::pair<IpAddr, uint16_t>> want, got;
      std::map<std::pair<IpAddr, uint16_t>, int> wanted_count;
      for (const Backend& b : it->second->backends) {
        if (b.addr.family == fam && b.weight > 0 && (!local || b.local)) {
          want.insert({b.addr, b.port});
          ++wanted_count[{b.addr, b.port}];
        }
      }
      const auto& map = rs.backends[fam == Family::kV4 ? 0 : 1];
      uint64_t at = first;
      size_t tiles = 0;
      for (auto t = map.lower_bound(r.offset); t != map.end() && t->first <= last; ++t) {
        if (t->first != at) Finding(absl::StrCat(name, ": tickets from ", at, " to ", t->first, " go nowhere"));
        if (t->second.last < t->first || t->second.last > last) Finding(name + ": an interval past the range");
        got.insert({t->second.addr, t->second.port});
        at = uint64_t{t->second.last} + 1;
        ++tiles;
      }
      if (tiles == 0) {
        if (!want.empty()) Finding(name + ": eligible endpoints but no ticket goes to them");
        continue;
      }
      if (at != last + 1) Finding(absl::StrCat(name, ": tickets ", at, "-", last, " go nowhere"));
      for (const auto& e : got) {
        if (!want.count(e)) Finding(absl::StrCat(name, ": tickets go to ", e.first.ToString(), ":", e.second,
                                                 ", which is not an eligible endpoint"));
      }
      size_t eligible = 0;
      for (const auto& [e, n] : wanted_count) eligible += n;
      if (eligible <= r.modulus && got != want) Finding(name + ": an eligible endpoint gets no ticket");
    }
  }
}

// ---- the run -------------------------------------------------------------------

constexpr char kTable[] = "fz";

void Run(FuzzedDataProvider& p) {
  Gen g(p);
  const dp::NodeSettings node = g.Node();
  std::map<std::string, Service> services;
  const int slots = g.Int(0, 12);
  for (int slot = 0; slot < slots; ++slot) {
    if (!g.Chance(70)) continue;
    Gen::Claims others;
    for (const auto& [k, s] : services) Gen::Claim(s, &others);
    Service s = g.Make(slot, others);
    services[s.Key()] = std::move(s);
  }
  Model model = Sorted(services, node);

  // 1 and 2: a compile with fresh or given indexes, and its full commit.
  {
    dp::IndexMap given;
    uint32_t min_shards = 0;
    const int how = g.Int(0, 9);
    if (how >= 6) {
      // Indexes anywhere, some in far shards (each shard up to the highest
      // exists, so the very last index only rarely).
      std::set<uint32_t> used;
      for (const Service& s : model.services) {
        for (const std::string& key : dp::IndexKeys(s)) {
          // Mostly low; sometimes in shards 1-3; rarely the very last ones.
          const int where = g.Int(0, 49);
          uint32_t index = where < 40   ? static_cast<uint32_t>(g.Int(0, 300))
                           : where < 49 ? static_cast<uint32_t>(g.Int(0, 4 * 256 - 1))
                                        : dp::kMaxIndex - static_cast<uint32_t>(g.Int(0, 3));
          while (!used.insert(index).second) index = index == 0 ? dp::kMaxIndex : index - 1;
          given[key] = index;
        }
      }
      min_shards = static_cast<uint32_t>(g.Int(0, 3));
    }
    const dp::Ruleset rs = dp::Compile(model, kTable, how >= 6 ? &given : nullptr, min_shards);
    CheckTickets(model, rs);
    NftKernel kernel;
    const std::string what = "a full commit of a fresh compile";
    auto socket = std::make_unique<KernelSocket>(&kernel);
    socket->what = &what;
    dp::NftWriter writer(std::move(socket));
    dp::CommitStats stats;
    if (absl::Status s = writer.CommitFull(rs, &stats); !s.ok()) Finding("CommitFull failed: " + s.ToString());
    Agree(kernel, dp::Render(rs), what, model);
  }

  // 3: the incremental dataplane through a few changes.
  NftKernel kernel;
  std::string what = "the first Apply";
  auto socket = std::make_unique<KernelSocket>(&kernel);
  socket->what = &what;
  std::unique_ptr<dp::NftDataplane> dataplane = dp::NftDataplane::Create(
      kTable, std::make_unique<dp::NftWriter>(std::move(socket)), std::make_unique<NoFlows>());
  auto check = [&](const Model& m) {
    const dp::Ruleset want = dp::Compile(m, kTable, &dataplane->indexes(), dataplane->shards());
    CheckTickets(m, want);
    Agree(kernel, dp::Render(want), what, m);
  };
  if (absl::Status s = dataplane->Apply(model, nullptr); !s.ok()) Finding("Apply failed: " + s.ToString());
  check(model);
  const int steps = g.Int(0, 6);
  for (int step = 1; step <= steps; ++step) {
    what = absl::StrCat("change ", step);
    dp::NodeSettings next_node = model.node;
    if (g.Chance(10)) next_node = g.Node();
    dp::ModelChange change;
    for (int n = g.Int(1, 4); n > 0; --n) {
      const int slot = g.Int(0, 12);
      const std::string key = Gen::Ns(slot) + "/" + Gen::Name(slot);
      auto it = services.find(key);
      bool touched = false;
      for (const Service& u : change.upserts) touched |= u.Key() == key;
      for (const std::string& r : change.removes) touched |= r == key;
      if (touched) continue;
      if (it != services.end() && g.Chance(25)) {
        services.erase(it);
        change.removes.push_back(key);
        continue;
      }
      Service next;
      if (it != services.end() && g.Chance(60) && !it->second.ports.empty()) {
        // Mostly endpoints change, as in real life.
        next = it->second;
        g.Backends(&next.ports[static_cast<size_t>(g.Int(0, static_cast<int>(next.ports.size()) - 1))]);
        if (g.Chance(20)) g.Knobs(&next);
      } else {
        Gen::Claims others;
        for (const auto& [k, s] : services) {
          if (k != key) Gen::Claim(s, &others);
        }
        next = g.Make(slot, others);
      }
      services[key] = next;
      change.upserts.push_back(std::move(next));
    }
    Model next = Sorted(services, next_node);
    absl::Status s = g.Chance(50) || !dp::Ruleset::SameNode(next_node, model.node) ? dataplane->Apply(next, nullptr)
                                                                                     : dataplane->Update(change, nullptr);
    if (!s.ok()) Finding(what + " failed: " + s.ToString());
    model = std::move(next);
    check(model);
  }
  // The dataplane's own text (what `nftproxy explain` shows) is the table too.
  Agree(kernel, dataplane->Installed(), what + " (the dataplane's own text)", model);
}

}  // namespace
}  // namespace nftproxy::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  nftproxy::fuzz::Run(p);
  return 0;
}
