// Randomized end-to-end check of the incremental write path against the real
// kernel: after a long random sequence of applies, syncs and deletes over a
// few thousand services, the kernel's ruleset must equal a fresh full compile
// of the final state (with the dataplane's stable service-port indexes).
//
// The whole process runs in a private network namespace (unshare in main),
// so it never touches the host's ruleset; the `nft` children it runs inherit
// that namespace. Needs root: skipped without it, except under CI=true where
// it fails.
//
// Flow: an initial load (~3,000 services in 20 namespaces owned by three
// sources, with slices, selectors and workloads), then ~2,000 random
// requests of 1-10 mutations each (services, slices and workloads created,
// changed and deleted; Syncs; dry runs; no-op re-applies; ~5% deliberately
// invalid requests, which must fail and change neither the kernel, nor the
// stored state, nor the dataplane's indexes; rarely a whole namespace wiped,
// a source's mass Sync, or the table deleted behind the dataplane's back).
// A shadow of the expected state keeps the valid requests valid. At every
// checkpoint: the stored state equals the shadow; the dataplane's installed
// model equals BuildModel(state); its service-port indexes are unique and
// exactly those the model needs; and `nft list table` equals
// Render(Compile(model, indexes, shards)) up to element and block order.
// At the end the final model also goes to a fresh table in one full commit.
//
// Knobs (environment):
//   NFTPROXY_SEED              seed of the run (printed on any failure)
//   NFTPROXY_RANDOM_SERVICES   services in the initial load (default 3000)
//   NFTPROXY_RANDOM_OPS        random requests after it (default 2000)
//   NFTPROXY_RANDOM_CHECKPOINT requests between full checks (default 250)
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dataplane/ip.h"
#include "dataplane/model.h"
#include "dataplane/nft_dataplane.h"
#include "dataplane/ruleset.h"
#include "server/model_builder.h"
#include "server/desired.h"
#include "server/write_engine.h"
#include "server/state_store.h"
#include "tests/integration/kernel_lab.h"

namespace nftproxy {
namespace {

namespace v1 = ::nftproxy::v1;

using kernel_lab::Normalize;

constexpr char kTable[] = "nftproxy_rand";
constexpr char kFreshTable[] = "nftproxy_rand_fresh";
constexpr char kNode[] = "node1";
constexpr uint32_t kNodePortMin = 30000, kNodePortMax = 32767;

uint64_t EnvInt(const char* name, uint64_t dflt) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return dflt;
  return strtoull(v, nullptr, 0);
}

// ---------------------------------------------------------------------------
// Kernel access: listing via nft, and the ruleset generation id (it changes
// on every nf_tables commit in this namespace, so "no commit happened" is
// exact).

std::string Run(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) {
    *status = -1;
    return "popen failed";
  }
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  *status = pclose(f);
  return out;
}

std::string KernelListing(const std::string& table) {
  int status = 0;
  std::string out = Run(absl::StrCat("nft list table inet ", table), &status);
  if (status != 0) ADD_FAILURE() << "nft list table inet " << table << " failed (status " << status << "): " << out;
  return out;
}

uint32_t KernelGenId() {
  static mnl_socket* nl = [] {
    mnl_socket* s = mnl_socket_open(NETLINK_NETFILTER);
    if (s != nullptr && mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
      mnl_socket_close(s);
      s = nullptr;
    }
    return s;
  }();
  static uint32_t seq = 1;
  if (nl == nullptr) {
    ADD_FAILURE() << "netlink socket: " << strerror(errno);
    return 0;
  }
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = ++seq;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    ADD_FAILURE() << "NFT_MSG_GETGEN send: " << strerror(errno);
    return 0;
  }
  const int n = static_cast<int>(mnl_socket_recvfrom(nl, buf.data(), buf.size()));
  if (n <= 0) {
    ADD_FAILURE() << "NFT_MSG_GETGEN recv: " << strerror(errno);
    return 0;
  }
  auto* reply = reinterpret_cast<nlmsghdr*>(buf.data());
  if (reply->nlmsg_type == NLMSG_ERROR) {
    ADD_FAILURE() << "NFT_MSG_GETGEN: netlink error";
    return 0;
  }
  auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(reply));
  for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(reply, sizeof(nfgenmsg)));
       mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr))); attr = mnl_attr_next(attr)) {
    if (mnl_attr_get_type(attr) == NFTA_GEN_ID) return ntohl(mnl_attr_get_u32(attr));
  }
  ADD_FAILURE() << "NFT_MSG_GETGEN: no NFTA_GEN_ID";
  return 0;
}


// Empty when equal; else the first difference and what each side has that
// the other lacks (as multisets, at most `max_lines` lines).
std::string DiffListings(const std::vector<std::string>& expected, const std::vector<std::string>& kernel,
                         size_t max_lines = 40) {
  if (expected == kernel) return "";
  std::string out;
  size_t i = 0;
  while (i < expected.size() && i < kernel.size() && expected[i] == kernel[i]) ++i;
  absl::StrAppend(&out, "first difference at normalised line ", i, " (expected ", expected.size(),
                  " lines, kernel ", kernel.size(), "):\n  expected: ",
                  i < expected.size() ? expected[i] : "<end>", "\n  kernel:   ", i < kernel.size() ? kernel[i] : "<end>",
                  "\n");
  std::map<std::string, int> count;
  for (const std::string& l : expected) ++count[l];
  for (const std::string& l : kernel) --count[l];
  size_t shown = 0;
  bool same_multiset = true;
  for (const auto& [l, c] : count) {
    if (c == 0) continue;
    same_multiset = false;
    if (shown++ >= max_lines) continue;
    absl::StrAppend(&out, c > 0 ? "  - only expected" : "  + only kernel  ", std::abs(c) > 1 ? absl::StrCat(" x", std::abs(c)) : "",
                    ": ", l, "\n");
  }
  if (shown > max_lines) absl::StrAppend(&out, "  ... ", shown - max_lines, " more differing lines\n");
  if (same_multiset) absl::StrAppend(&out, "  (same lines, different order)\n");
  return out;
}

std::string Serialize(const google::protobuf::Message& m) { return DeterministicBytes(m); }

// The resource without the fields the server assigns.
v1::Resource UserPart(v1::Resource r) {
  v1::ObjectMeta* m = MutableMetaOf(&r);
  m->clear_resource_version();
  m->clear_create_time();
  m->clear_update_time();
  return r;
}

std::string DescribeService(const dp::Service& s) {
  std::string out = absl::StrCat(s.Key(), " ips=");
  for (const auto& a : s.cluster_ips) absl::StrAppend(&out, a.ToString(), ",");
  absl::StrAppend(&out, " ext=", s.external_ips.size(), " lb=", s.lb_ips.size(), " ranges=", s.lb_source_ranges.size(),
                  " lb_mode=", static_cast<int>(s.lb), " etp=", static_cast<int>(s.external_policy),
                  " itp=", static_cast<int>(s.internal_policy), " affinity=", s.affinity_timeout_s, " ports=[");
  for (const auto& p : s.ports) {
    absl::StrAppend(&out, p.name, ":", dp::L4ProtoName(p.proto), "/", p.port, " np=", p.node_port, " backends={");
    for (const auto& b : p.backends) {
      absl::StrAppend(&out, b.addr.ToString(), ":", b.port, " w", b.weight, b.local ? " local" : "", "; ");
    }
    absl::StrAppend(&out, "} ");
  }
  return out + "]";
}

// The first field where two dp::Services differ, e.g.
// "ports[1].backends[3]: 198.18.0.7:8080 w2 vs 198.18.0.7:8080 w1".
std::string FirstDifference(const dp::Service& a, const dp::Service& b) {
  auto ips = [](const std::vector<dp::IpAddr>& v) {
    std::vector<std::string> s;
    for (const auto& ip : v) s.push_back(ip.ToString());
    return absl::StrCat("[", absl::StrJoin(s, ","), "]");
  };
  auto backend = [](const dp::Backend& x) {
    return absl::StrCat(x.addr.ToString(), ":", x.port, " w", x.weight, x.local ? " local" : "");
  };
  if (a.cluster_ips != b.cluster_ips) return absl::StrCat("cluster_ips: ", ips(a.cluster_ips), " vs ", ips(b.cluster_ips));
  if (a.external_ips != b.external_ips) return absl::StrCat("external_ips: ", ips(a.external_ips), " vs ", ips(b.external_ips));
  if (a.lb_ips != b.lb_ips) return absl::StrCat("lb_ips: ", ips(a.lb_ips), " vs ", ips(b.lb_ips));
  if (a.lb_source_ranges != b.lb_source_ranges) return "lb_source_ranges";
  if (a.lb != b.lb) return absl::StrCat("lb mode: ", static_cast<int>(a.lb), " vs ", static_cast<int>(b.lb));
  if (a.external_policy != b.external_policy) return "external_policy";
  if (a.internal_policy != b.internal_policy) return "internal_policy";
  if (a.affinity_timeout_s != b.affinity_timeout_s) {
    return absl::StrCat("affinity_timeout_s: ", a.affinity_timeout_s, " vs ", b.affinity_timeout_s);
  }
  if (a.ports.size() != b.ports.size()) return absl::StrCat("ports: ", a.ports.size(), " vs ", b.ports.size());
  for (size_t i = 0; i < a.ports.size(); ++i) {
    const dp::ServicePort& p = a.ports[i];
    const dp::ServicePort& q = b.ports[i];
    const std::string f = absl::StrCat("ports[", i, "]");
    if (p.name != q.name || p.proto != q.proto || p.port != q.port || p.node_port != q.node_port) {
      return absl::StrCat(f, ": ", p.name, " ", dp::L4ProtoName(p.proto), "/", p.port, " np ", p.node_port, " vs ", q.name,
                          " ", dp::L4ProtoName(q.proto), "/", q.port, " np ", q.node_port);
    }
    for (size_t j = 0; j < std::max(p.backends.size(), q.backends.size()); ++j) {
      const std::string x = j < p.backends.size() ? backend(p.backends[j]) : "<none>";
      const std::string y = j < q.backends.size() ? backend(q.backends[j]) : "<none>";
      if (x != y) {
        return absl::StrCat(f, ".backends[", j, "] (of ", p.backends.size(), " vs ", q.backends.size(), "): ", x, " vs ", y);
      }
    }
  }
  return "no field differs";
}

// ---------------------------------------------------------------------------
// The shadow: what the test believes the server holds (resources as sent,
// namespace and source filled in), with the indexes needed to generate valid
// writes (frontend slots, slices per service, selector services) and an undo
// log so that a batch can be staged and dropped again.

struct Pool {
  std::vector<std::string> items;
  std::unordered_map<std::string, size_t> pos;
  void Add(const std::string& s) {
    if (pos.count(s)) return;
    pos[s] = items.size();
    items.push_back(s);
  }
  void Remove(const std::string& s) {
    auto it = pos.find(s);
    if (it == pos.end()) return;
    const size_t i = it->second;
    pos.erase(it);
    if (i + 1 != items.size()) {
      items[i] = items.back();
      pos[items[i]] = i;
    }
    items.pop_back();
  }
};

std::string ProtoName(v1::Protocol p) {
  return v1::Protocol_Name(p == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p);
}

// Frontend slots a service claims, as the server defines them (an address
// and port/protocol of any of its address lists; a node port/protocol).
std::vector<std::string> SlotsOf(const v1::Service& s) {
  std::vector<std::string> out;
  for (const v1::ServicePort& p : s.spec().ports()) {
    if (p.node_port() != 0) out.push_back(absl::StrCat("np/", p.node_port(), "/", ProtoName(p.protocol())));
  }
  for (const auto* list : {&s.spec().cluster_ips(), &s.spec().external_ips(), &s.spec().load_balancer_ips()}) {
    for (const std::string& a : *list) {
      auto ip = dp::IpAddr::Parse(a);
      if (!ip.ok()) continue;
      for (const v1::ServicePort& p : s.spec().ports()) {
        out.push_back(absl::StrCat(ip->ToString(), "/", p.port(), "/", ProtoName(p.protocol())));
      }
    }
  }
  return out;
}

class Shadow {
 public:
  const v1::Resource* Find(const Key& k) const {
    auto it = objects_.find(k);
    return it == objects_.end() ? nullptr : &it->second;
  }
  const std::map<Key, v1::Resource>& objects() const { return objects_; }

  void Put(const Key& k, std::optional<v1::Resource> r) {
    auto it = objects_.find(k);
    std::optional<v1::Resource> old;
    if (it != objects_.end()) {
      Index(k, it->second, false);
      old = std::move(it->second);
      objects_.erase(it);
    }
    if (r) {
      auto ins = objects_.emplace(k, std::move(*r)).first;
      Index(k, ins->second, true);
    }
    if (recording_) undo_.emplace_back(k, std::move(old));
  }
  void Begin() {
    recording_ = true;
    undo_.clear();
  }
  void Commit() {
    recording_ = false;
    undo_.clear();
  }
  void Rollback() {
    recording_ = false;
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) Put(it->first, std::move(it->second));
    undo_.clear();
  }

  // Whether someone other than `me` ("ns/name") claims the slot.
  bool SlotTaken(const std::string& slot, const std::string& me) const {
    auto it = slot_owners_.find(slot);
    if (it == slot_owners_.end()) return false;
    return it->second.size() > 1 || (it->second.size() == 1 && *it->second.begin() != me);
  }
  const std::map<std::string, std::set<std::string>>& slot_owners() const { return slot_owners_; }
  const std::set<std::string>& SlicesOf(const std::string& ns, const std::string& svc) const {
    static const std::set<std::string> kNone;
    auto it = slices_of_.find({ns, svc});
    return it == slices_of_.end() ? kNone : it->second;
  }
  const std::set<std::string>& SelectorServices(const std::string& ns) const {
    static const std::set<std::string> kNone;
    auto it = selector_services_.find(ns);
    return it == selector_services_.end() ? kNone : it->second;
  }
  const Pool& PoolOf(v1::Kind kind, const std::string& ns) {
    return pools_[{kind, ns}];
  }

  // Whether service `k` may be stored as `s` (valid on its own assumed):
  // its slots are free or its own, node ports in range, and a selector
  // only without slices naming it.
  bool FitsService(const Key& k, const v1::Service& s) const {
    const std::string me = absl::StrCat(k.ns, "/", k.name);
    std::set<std::string> mine;
    for (const std::string& slot : SlotsOf(s)) {
      // Two ports of one service on one node port (or one address twice) is
      // something the server allows; the test keeps clear of it.
      if (!mine.insert(slot).second) return false;
      if (SlotTaken(slot, me)) return false;
    }
    for (const v1::ServicePort& p : s.spec().ports()) {
      if (p.node_port() != 0 && (p.node_port() < kNodePortMin || p.node_port() > kNodePortMax)) return false;
      if (p.node_port() == 0 && s.spec().type() == v1::ServiceSpec::NODE_PORT) return false;
    }
    if (!s.spec().selector().empty() && !SlicesOf(k.ns, k.name).empty()) return false;
    return true;
  }
  bool FitsSlice(const std::string& ns, const std::string& service) const {
    const v1::Resource* svc = Find(Key{v1::SERVICE, ns, service});
    return svc == nullptr || svc->service().spec().selector().empty();
  }

 private:
  void Index(const Key& k, const v1::Resource& r, bool add) {
    Pool& pool = pools_[{k.kind, k.ns}];
    if (add) pool.Add(k.name);
    else pool.Remove(k.name);
    if (k.kind == v1::SERVICE) {
      const std::string me = absl::StrCat(k.ns, "/", k.name);
      for (const std::string& slot : SlotsOf(r.service())) {
        if (add) {
          slot_owners_[slot].insert(me);
        } else if (auto it = slot_owners_.find(slot); it != slot_owners_.end()) {
          it->second.erase(me);
          if (it->second.empty()) slot_owners_.erase(it);
        }
      }
      if (!r.service().spec().selector().empty()) {
        if (add) selector_services_[k.ns].insert(k.name);
        else selector_services_[k.ns].erase(k.name);
      }
    } else if (k.kind == v1::ENDPOINT_SLICE) {
      auto& set = slices_of_[{k.ns, r.endpoint_slice().service_name()}];
      if (add) set.insert(k.name);
      else set.erase(k.name);
    }
  }

  std::map<Key, v1::Resource> objects_;
  // Slot -> services claiming it (one in a valid state; a staged invalid
  // batch may add a second).
  std::map<std::string, std::set<std::string>> slot_owners_;
  std::map<std::pair<std::string, std::string>, std::set<std::string>> slices_of_;
  std::map<std::string, std::set<std::string>> selector_services_;
  std::map<std::pair<int, std::string>, Pool> pools_;
  bool recording_ = false;
  std::vector<std::pair<Key, std::optional<v1::Resource>>> undo_;
};

// ---------------------------------------------------------------------------
// The random generator of resources and requests.

const std::vector<std::string> kSvcPortNames = {"http", "https", "dns", "grpc", "metrics", "admin", "p1", "p2"};
const std::vector<std::string> kTargetNames = {"web", "metrics", "dns", "grpc"};
const std::vector<std::string> kRanges = {"10.0.0.0/8",        "172.16.5.0/24",   "192.168.7.9/16",
                                          "100.64.0.0/10",     "2001:db8:100::/48", "fd12::1/64",
                                          "203.0.113.77/32"};

struct Batch {
  v1::ApplyRequest req;
  std::set<Key> touched;
  std::string source;
  std::vector<std::string> namespaces;
  bool sync = false;  // for Sync requests: only the shadow matters
};

// Mutation counters for the report.
struct Mix {
  std::map<std::string, int> n;
  void Add(const std::string& what) { ++n[what]; }
  std::string ToString() const {
    std::vector<std::string> parts;
    for (const auto& [k, v] : n) parts.push_back(absl::StrCat(k, "=", v));
    return absl::StrJoin(parts, " ");
  }
};

class Gen {
 public:
  Gen(uint32_t seed, Shadow* shadow) : rng_(seed), sh_(shadow) {
    for (int i = 0; i < 20; ++i) {
      const std::string ns = absl::StrCat("ns-", i < 10 ? "0" : "", i);
      namespaces_.push_back(ns);
      source_of_[ns] = i < 12 ? "" : i < 18 ? "adapter-a" : "adapter-b";
    }
  }

  std::mt19937& rng() { return rng_; }
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[static_cast<size_t>(Uniform(0, static_cast<int>(v.size()) - 1))]; }
  // Index by weight.
  size_t Weighted(const std::vector<int>& w) {
    int total = 0;
    for (int x : w) total += x;
    int r = Uniform(0, total - 1);
    for (size_t i = 0; i < w.size(); ++i) {
      if (r < w[i]) return i;
      r -= w[i];
    }
    return w.size() - 1;
  }

  const std::vector<std::string>& namespaces() const { return namespaces_; }
  const std::string& SourceOf(const std::string& ns) const { return source_of_.at(ns); }
  std::vector<std::string> NamespacesOf(const std::string& source) const {
    std::vector<std::string> out;
    for (const std::string& ns : namespaces_) {
      if (source_of_.at(ns) == source) out.push_back(ns);
    }
    return out;
  }
  Mix& mix() { return mix_; }
  const Mix& mix() const { return mix_; }

  // --- addresses ----------------------------------------------------------
  std::string NewClusterIp(bool v6) {
    if (!v6) {
      const uint32_t n = next_v4_++;
      return absl::StrCat("198.19.", (n >> 8) & 255, ".", n & 255);
    }
    return absl::StrCat("fd00:19::", absl::Hex(next_v6_++));
  }
  std::string EndpointIp(bool v6) {
    const int n = Uniform(1, 4095);
    if (!v6) return absl::StrCat("198.18.", n >> 8, ".", n & 255);
    return absl::StrCat("fd00:18::", absl::Hex(n));
  }
  std::string ExternalIp(bool v6) {
    const int n = Uniform(1, 200);
    return v6 ? absl::StrCat("2001:db8:e::", absl::Hex(n)) : absl::StrCat("203.0.113.", n);
  }
  std::string LbIp(bool v6) {
    const int n = Uniform(1, 200);
    return v6 ? absl::StrCat("2001:db8:b::", absl::Hex(n)) : absl::StrCat("192.0.2.", n);
  }

  v1::Protocol RandomProto() {
    switch (Weighted({55, 25, 12, 8})) {
      case 0: return v1::TCP;
      case 1: return v1::UDP;
      case 2: return v1::SCTP;
      default: return v1::PROTOCOL_UNSPECIFIED;
    }
  }
  uint32_t RandomPort() {
    static const std::vector<uint32_t> common = {53, 80, 443, 8080, 8443, 9090};
    return Chance(0.6) ? Pick(common) : static_cast<uint32_t>(Uniform(1, 65535));
  }

  // --- services -----------------------------------------------------------
  // `touched`: keys the request already names (a name deleted in it cannot
  // be created in it too).
  std::string NewServiceName(const std::string& ns, const std::set<Key>& touched) {
    // Sometimes bring back a deleted name: its index, chains and orphaned
    // slices come back to life.
    auto& dead = deleted_services_[ns];
    if (!dead.empty() && Chance(0.2)) {
      const size_t i = static_cast<size_t>(Uniform(0, static_cast<int>(dead.size()) - 1));
      const Key k{v1::SERVICE, ns, dead[i]};
      if (sh_->Find(k) == nullptr && !touched.count(k)) {
        dead.erase(dead.begin() + static_cast<long>(i));
        return k.name;
      }
    }
    return absl::StrCat("svc-", next_service_++);
  }
  void NoteDeletedService(const std::string& ns, const std::string& name) { deleted_services_[ns].push_back(name); }

  void RollClusterIps(v1::ServiceSpec* spec) {
    spec->clear_cluster_ips();
    // Now and then share the address of another service (other ports):
    // the cluster-ips set element is then referenced by both.
    if (Chance(0.08)) {
      const std::string& ns = Pick(namespaces_);
      const Pool& pool = sh_->PoolOf(v1::SERVICE, ns);
      if (!pool.items.empty()) {
        const v1::Resource* r = sh_->Find(Key{v1::SERVICE, ns, Pick(pool.items)});
        if (r != nullptr && r->service().spec().cluster_ips_size() > 0) {
          *spec->mutable_cluster_ips() = r->service().spec().cluster_ips();
          return;
        }
      }
    }
    switch (Weighted({55, 20, 25})) {
      case 0: spec->add_cluster_ips(NewClusterIp(false)); break;
      case 1: spec->add_cluster_ips(NewClusterIp(true)); break;
      default:
        if (Chance(0.5)) {
          spec->add_cluster_ips(NewClusterIp(false));
          spec->add_cluster_ips(NewClusterIp(true));
        } else {
          spec->add_cluster_ips(NewClusterIp(true));
          spec->add_cluster_ips(NewClusterIp(false));
        }
    }
  }

  void RandomTarget(v1::ServicePort* p) {
    switch (Weighted({35, 30, 35})) {
      case 0: p->set_target_port(Chance(0.3) ? p->port() : static_cast<uint32_t>(Uniform(1, 65535))); break;
      case 1: p->set_target_port_name(Pick(kTargetNames)); break;
      default: p->clear_target(); break;
    }
  }

  // Names every port when there is more than one, uniquely.
  void FixPortNames(v1::ServiceSpec* spec) {
    if (spec->ports_size() <= 1) return;
    std::set<std::string> used;
    for (auto& p : *spec->mutable_ports()) {
      if (p.name().empty() || used.count(p.name())) {
        for (int k = 0;; ++k) {
          std::string n = k < static_cast<int>(kSvcPortNames.size()) ? kSvcPortNames[k] : absl::StrCat("p", k);
          if (!used.count(n)) {
            p.set_name(n);
            break;
          }
        }
      }
      used.insert(p.name());
    }
  }

  bool PortTaken(const v1::ServiceSpec& spec, uint32_t port, v1::Protocol proto, int except = -1) {
    for (int i = 0; i < spec.ports_size(); ++i) {
      if (i != except && spec.ports(i).port() == port && ProtoName(spec.ports(i).protocol()) == ProtoName(proto)) {
        return true;
      }
    }
    return false;
  }

  void AddRandomPort(v1::ServiceSpec* spec) {
    for (int tries = 0; tries < 20; ++tries) {
      const uint32_t port = RandomPort();
      const v1::Protocol proto = RandomProto();
      if (PortTaken(*spec, port, proto)) continue;
      v1::ServicePort* p = spec->add_ports();
      p->set_port(port);
      p->set_protocol(proto);
      std::set<std::string> used;
      for (const auto& q : spec->ports()) used.insert(q.name());
      if (spec->ports_size() > 1 || Chance(0.6)) {
        for (int k = 0; k < 20; ++k) {
          const std::string& n = Pick(kSvcPortNames);
          if (!used.count(n)) {
            p->set_name(n);
            break;
          }
        }
      }
      RandomTarget(p);
      FixPortNames(spec);
      return;
    }
  }

  void RollPorts(v1::ServiceSpec* spec) {
    spec->clear_ports();
    const bool ext_name = spec->type() == v1::ServiceSpec::EXTERNAL_NAME;
    const int n = ext_name ? Uniform(0, 1) : static_cast<int>(Weighted({0, 50, 35, 15}));
    for (int i = 0; i < n; ++i) AddRandomPort(spec);
    if (!ext_name && spec->ports_size() == 0) AddRandomPort(spec);
  }

  void TweakPorts(v1::ServiceSpec* spec) {
    const bool ext_name = spec->type() == v1::ServiceSpec::EXTERNAL_NAME;
    if (spec->ports_size() == 0) {
      AddRandomPort(spec);
      return;
    }
    const int i = Uniform(0, spec->ports_size() - 1);
    v1::ServicePort* p = spec->mutable_ports(i);
    switch (Uniform(0, 5)) {
      case 0: {  // another port number
        const uint32_t port = RandomPort();
        if (!PortTaken(*spec, port, p->protocol(), i)) p->set_port(port);
        break;
      }
      case 1: {  // another protocol
        const v1::Protocol proto = RandomProto();
        if (!PortTaken(*spec, p->port(), proto, i)) p->set_protocol(proto);
        break;
      }
      case 2: RandomTarget(p); break;
      case 3: AddRandomPort(spec); break;
      case 4:
        if (spec->ports_size() > 1 || ext_name) spec->mutable_ports()->DeleteSubrange(i, 1);
        break;
      default: p->set_node_port(0); break;  // re-picked by FixNodePorts for NODE_PORT
    }
    FixPortNames(spec);
  }

  uint32_t FreeNodePort(const std::string& me, v1::Protocol proto, const v1::ServiceSpec& spec) {
    for (int tries = 0; tries < 50; ++tries) {
      const uint32_t np = static_cast<uint32_t>(Uniform(kNodePortMin, kNodePortMax));
      if (sh_->SlotTaken(absl::StrCat("np/", np, "/", ProtoName(proto)), me)) continue;
      bool dup = false;
      for (const auto& p : spec.ports()) dup |= p.node_port() == np && ProtoName(p.protocol()) == ProtoName(proto);
      if (!dup) return np;
    }
    return 0;
  }

  // Node ports as the type wants them: all ports for NODE_PORT, some for
  // LOAD_BALANCER, none otherwise.
  void FixNodePorts(const Key& k, v1::ServiceSpec* spec, bool reroll) {
    const std::string me = absl::StrCat(k.ns, "/", k.name);
    const auto type = spec->type();
    for (auto& p : *spec->mutable_ports()) {
      if (type != v1::ServiceSpec::NODE_PORT && type != v1::ServiceSpec::LOAD_BALANCER) {
        p.set_node_port(0);
        continue;
      }
      const bool want = type == v1::ServiceSpec::NODE_PORT || p.node_port() != 0 || Chance(0.8);
      if (!want) continue;
      if (p.node_port() != 0 && !reroll) continue;
      p.set_node_port(0);
      p.set_node_port(FreeNodePort(me, p.protocol(), *spec));
    }
  }

  void RollExternalIps(v1::ServiceSpec* spec) {
    spec->clear_external_ips();
    if (!Chance(0.15)) return;
    const int n = Uniform(1, 2);
    std::set<std::string> seen;
    for (int i = 0; i < n; ++i) {
      std::string a = ExternalIp(Chance(0.3));
      if (seen.insert(a).second) spec->add_external_ips(a);
    }
  }

  void RollLb(v1::ServiceSpec* spec) {
    spec->clear_load_balancer_ips();
    spec->clear_load_balancer_source_ranges();
    if (spec->type() != v1::ServiceSpec::LOAD_BALANCER && !Chance(0.05)) return;
    const int n = Uniform(0, 2);
    std::set<std::string> seen;
    for (int i = 0; i < n; ++i) {
      std::string a = LbIp(Chance(0.3));
      if (seen.insert(a).second) spec->add_load_balancer_ips(a);
    }
    if (Chance(0.35)) {
      const int r = Uniform(1, 3);
      for (int i = 0; i < r; ++i) spec->add_load_balancer_source_ranges(Pick(kRanges));
    }
  }

  void RollPolicies(v1::ServiceSpec* spec) {
    using S = v1::ServiceSpec;
    spec->set_external_traffic_policy(Chance(0.25) ? S::LOCAL : Chance(0.3) ? S::CLUSTER : S::TRAFFIC_POLICY_UNSPECIFIED);
    spec->set_internal_traffic_policy(Chance(0.15) ? S::LOCAL : Chance(0.3) ? S::CLUSTER : S::TRAFFIC_POLICY_UNSPECIFIED);
    spec->clear_session_affinity_timeout();
    if (Chance(0.2)) {
      spec->set_session_affinity(S::CLIENT_IP);
      if (Chance(0.5)) spec->mutable_session_affinity_timeout()->set_seconds(Chance(0.5) ? Uniform(1, 86400) : 10800);
    } else {
      spec->set_session_affinity(Chance(0.5) ? S::NONE : S::SESSION_AFFINITY_UNSPECIFIED);
    }
    spec->set_load_balancing(static_cast<S::LoadBalancing>(Uniform(0, 3)));
  }

  void RollSelector(v1::ServiceSpec* spec, double p) {
    spec->clear_selector();
    if (!Chance(p)) return;
    (*spec->mutable_selector())["app"] = absl::StrCat("a", Uniform(0, 7));
    if (Chance(0.3)) (*spec->mutable_selector())["tier"] = absl::StrCat("t", Uniform(0, 2));
  }

  void SetType(v1::ServiceSpec* spec, v1::ServiceSpec::Type t) {
    using S = v1::ServiceSpec;
    spec->set_type(t);
    if (t == S::EXTERNAL_NAME) {
      spec->clear_cluster_ips();
      spec->clear_external_ips();
      spec->clear_load_balancer_ips();
      spec->clear_load_balancer_source_ranges();
      spec->set_external_name(absl::StrCat("db", Uniform(0, 99), ".example.com"));
    } else {
      spec->clear_external_name();
      if (spec->cluster_ips_size() == 0) RollClusterIps(spec);
      if (spec->ports_size() == 0) AddRandomPort(spec);
      if (t == S::LOAD_BALANCER && spec->load_balancer_ips_size() == 0) RollLb(spec);
      if (t != S::LOAD_BALANCER && Chance(0.7)) {
        spec->clear_load_balancer_ips();
        spec->clear_load_balancer_source_ranges();
      }
    }
  }

  v1::ServiceSpec::Type RandomType() {
    using S = v1::ServiceSpec;
    switch (Weighted({5, 55, 20, 12, 8})) {
      case 0: return S::TYPE_UNSPECIFIED;
      case 1: return S::CLUSTER_IP;
      case 2: return S::NODE_PORT;
      case 3: return S::LOAD_BALANCER;
      default: return S::EXTERNAL_NAME;
    }
  }

  std::optional<v1::Resource> NewService(const std::string& ns, const std::string& name, const std::string& source) {
    const Key k{v1::SERVICE, ns, name};
    for (int attempt = 0; attempt < 8; ++attempt) {
      v1::Resource r;
      v1::Service* s = r.mutable_service();
      s->mutable_metadata()->set_namespace_(ns);
      s->mutable_metadata()->set_name(name);
      s->mutable_metadata()->set_source(source);
      if (Chance(0.1)) (*s->mutable_metadata()->mutable_labels())["team"] = absl::StrCat("t", Uniform(0, 3));
      v1::ServiceSpec* spec = s->mutable_spec();
      const auto type = RandomType();
      spec->set_type(type);
      if (type != v1::ServiceSpec::EXTERNAL_NAME) RollClusterIps(spec);
      RollPorts(spec);
      SetType(spec, type);
      if (type != v1::ServiceSpec::EXTERNAL_NAME) RollExternalIps(spec);
      RollPolicies(spec);
      RollSelector(spec, 0.15);
      FixNodePorts(k, spec, false);
      if (sh_->FitsService(k, *s)) return r;
    }
    return std::nullopt;
  }

  std::optional<v1::Resource> ModifyService(const Key& k, const v1::Resource& cur, Batch* b) {
    for (int attempt = 0; attempt < 8; ++attempt) {
      v1::Resource r = cur;
      v1::ServiceSpec* spec = r.mutable_service()->mutable_spec();
      const int changes = Uniform(1, 3);
      bool reroll_np = false;
      for (int c = 0; c < changes; ++c) {
        switch (Weighted({14, 20, 10, 10, 6, 6, 14, 8, 6, 6})) {
          case 0: RollPorts(spec); mix_.Add("svc.ports"); break;
          case 1: TweakPorts(spec); mix_.Add("svc.port-tweak"); break;
          case 2:
            if (spec->type() != v1::ServiceSpec::EXTERNAL_NAME) RollClusterIps(spec);
            mix_.Add("svc.cluster-ips");
            break;
          case 3: SetType(spec, RandomType()); mix_.Add("svc.type"); break;
          case 4:
            if (spec->type() != v1::ServiceSpec::EXTERNAL_NAME) RollExternalIps(spec);
            mix_.Add("svc.external-ips");
            break;
          case 5:
            if (spec->type() != v1::ServiceSpec::EXTERNAL_NAME) RollLb(spec);
            mix_.Add("svc.lb-ips");
            break;
          case 6: RollPolicies(spec); mix_.Add("svc.policies"); break;
          case 7: RollSelector(spec, spec->selector().empty() ? 0.7 : 0.3); mix_.Add("svc.selector"); break;
          case 8: reroll_np = true; mix_.Add("svc.node-ports"); break;
          default: {  // drop or add a family
            if (spec->type() == v1::ServiceSpec::EXTERNAL_NAME) break;
            mix_.Add("svc.family");
            if (spec->cluster_ips_size() == 2) {
              spec->mutable_cluster_ips()->DeleteSubrange(Uniform(0, 1), 1);
            } else if (spec->cluster_ips_size() == 1) {
              const bool v6 = spec->cluster_ips(0).find(':') != std::string::npos;
              spec->add_cluster_ips(NewClusterIp(!v6));
            }
          }
        }
      }
      FixNodePorts(k, spec, reroll_np);
      // A selector on a service that still owns slices: delete the slices
      // in the same request, or give up the selector.
      const auto& slices = sh_->SlicesOf(k.ns, k.name);
      if (!spec->selector().empty() && !slices.empty()) {
        bool free = true;
        for (const std::string& s : slices) free &= !b->touched.count(Key{v1::ENDPOINT_SLICE, k.ns, s});
        if (free && Chance(0.6)) {
          const std::vector<std::string> names(slices.begin(), slices.end());
          for (const std::string& s : names) Delete(b, Key{v1::ENDPOINT_SLICE, k.ns, s});
          mix_.Add("svc.selector-takes-over");
        } else {
          spec->clear_selector();
        }
      }
      if (sh_->FitsService(k, r.service())) return r;
    }
    return std::nullopt;
  }

  // --- endpoints ----------------------------------------------------------
  void RandomConditions(v1::EndpointConditions* c) {
    c->Clear();
    if (Chance(0.65)) return;
    if (Chance(0.7)) c->set_ready(Chance(0.5));
    if (Chance(0.5)) c->set_serving(Chance(0.6));
    if (Chance(0.5)) c->set_terminating(Chance(0.5));
  }
  void RandomWeight(bool* has, uint32_t* w) {
    switch (Weighted({65, 10, 20, 5})) {
      case 0: *has = false; *w = 0; break;
      case 1: *has = true; *w = 0; break;
      case 2: *has = true; *w = static_cast<uint32_t>(Uniform(1, 10)); break;
      default: *has = true; *w = static_cast<uint32_t>(Uniform(11, 10000)); break;
    }
  }
  std::string RandomNode() {
    switch (Weighted({30, 40, 30})) {
      case 0: return kNode;
      case 1: return Chance(0.5) ? "node2" : "node3";
      default: return "";
    }
  }
  // fam: 4, 6 or 46 (either or both per endpoint).
  void RandomEndpoint(int fam, v1::Endpoint* e) {
    e->Clear();
    bool v4 = fam == 4, v6 = fam == 6;
    if (fam == 46) {
      switch (Uniform(0, 2)) {
        case 0: v4 = true; break;
        case 1: v6 = true; break;
        default: v4 = v6 = true;
      }
    }
    if (Chance(0.03)) std::swap(v4, v6);  // the "wrong" family now and then
    if (!v4 && !v6) v4 = true;
    if (v4) e->add_addresses(EndpointIp(false));
    if (v6) e->add_addresses(EndpointIp(true));
    if (v4 && v6 && Chance(0.5)) e->mutable_addresses()->SwapElements(0, 1);
    RandomConditions(e->mutable_conditions());
    if (e->conditions().ByteSizeLong() == 0 && Chance(0.5)) e->clear_conditions();
    e->set_node_name(RandomNode());
    bool has;
    uint32_t w;
    RandomWeight(&has, &w);
    if (has) e->set_weight(w);
    if (Chance(0.2)) e->set_zone(absl::StrCat("zone-", Uniform(0, 2)));
  }
  int FamilyOf(const v1::Service* svc) {
    if (svc == nullptr || svc->spec().cluster_ips_size() == 0) return Pick(std::vector<int>{4, 6, 46});
    bool v4 = false, v6 = false;
    for (const std::string& a : svc->spec().cluster_ips()) (a.find(':') == std::string::npos ? v4 : v6) = true;
    return v4 && v6 ? 46 : v6 ? 6 : 4;
  }
  void RollSlicePorts(v1::EndpointSlice* s, const v1::Service* svc) {
    s->clear_ports();
    std::set<std::string> used;
    auto add = [&](const std::string& name, v1::Protocol proto) {
      if (!used.insert(absl::StrCat(name, "/", ProtoName(proto))).second) return;
      v1::EndpointPort* p = s->add_ports();
      p->set_name(name);
      p->set_protocol(proto);
      p->set_port(static_cast<uint32_t>(Chance(0.3) ? Pick(std::vector<int>{80, 8080, 53, 9000}) : Uniform(1024, 65535)));
    };
    if (svc != nullptr) {
      for (const v1::ServicePort& sp : svc->spec().ports()) {
        if (Chance(0.1)) continue;  // no port for this service port: those endpoints are left out
        const std::string name =
            sp.target_case() == v1::ServicePort::kTargetPortName && Chance(0.6) ? sp.target_port_name() : sp.name();
        add(name, Chance(0.93) ? sp.protocol() : RandomProto());
      }
    }
    if (svc == nullptr || Chance(0.15)) add(Pick(kTargetNames), RandomProto());
  }
  void RollEndpoints(v1::EndpointSlice* s, int fam) {
    s->clear_endpoints();
    const int n = Chance(0.04) ? 0 : Uniform(1, 12);
    for (int i = 0; i < n; ++i) RandomEndpoint(fam, s->add_endpoints());
  }
  v1::Resource NewSlice(const std::string& ns, const std::string& name, const std::string& service,
                        const std::string& source) {
    v1::Resource r;
    v1::EndpointSlice* s = r.mutable_endpoint_slice();
    s->mutable_metadata()->set_namespace_(ns);
    s->mutable_metadata()->set_name(name);
    s->mutable_metadata()->set_source(source);
    s->set_service_name(service);
    const v1::Resource* svc = sh_->Find(Key{v1::SERVICE, ns, service});
    RollSlicePorts(s, svc ? &svc->service() : nullptr);
    RollEndpoints(s, FamilyOf(svc ? &svc->service() : nullptr));
    return r;
  }
  std::string NewSliceName(const std::string& service) { return absl::StrCat(service, "-", next_slice_++); }

  // A service in `ns` that may own slices (no selector), or "".
  std::string SliceTarget(const std::string& ns) {
    const Pool& pool = sh_->PoolOf(v1::SERVICE, ns);
    for (int tries = 0; tries < 10 && !pool.items.empty(); ++tries) {
      const std::string& name = Pick(pool.items);
      if (sh_->FitsSlice(ns, name)) return name;
    }
    return "";
  }

  v1::Resource ModifySlice(const Key& k, const v1::Resource& cur) {
    v1::Resource r = cur;
    v1::EndpointSlice* s = r.mutable_endpoint_slice();
    const v1::Resource* svc = sh_->Find(Key{v1::SERVICE, k.ns, s->service_name()});
    const int fam = FamilyOf(svc ? &svc->service() : nullptr);
    switch (Weighted({45, 15, 12, 10})) {
      case 0: {
        mix_.Add("slice.endpoint-edit");
        const int edits = Uniform(1, 3);
        for (int e = 0; e < edits; ++e) {
          const int n = s->endpoints_size();
          const int what = n == 0 ? 0 : Uniform(0, 5);
          if (what == 0) {
            RandomEndpoint(fam, s->add_endpoints());
            continue;
          }
          const int i = Uniform(0, n - 1);
          v1::Endpoint* ep = s->mutable_endpoints(i);
          switch (what) {
            case 1: s->mutable_endpoints()->DeleteSubrange(i, 1); break;
            case 2: RandomConditions(ep->mutable_conditions()); break;
            case 3: {
              bool has;
              uint32_t w;
              RandomWeight(&has, &w);
              if (has) ep->set_weight(w);
              else ep->clear_weight();
              break;
            }
            case 4: ep->set_node_name(RandomNode()); break;
            default: RandomEndpoint(fam, ep); break;
          }
        }
        break;
      }
      case 1: RollEndpoints(s, fam); mix_.Add("slice.endpoints"); break;
      case 2: RollSlicePorts(s, svc ? &svc->service() : nullptr); mix_.Add("slice.ports"); break;
      default: {
        const std::string to = SliceTarget(k.ns);
        if (!to.empty()) {
          s->set_service_name(to);
          mix_.Add("slice.move");
        }
      }
    }
    return r;
  }

  // --- workloads ----------------------------------------------------------
  void RollLabels(v1::ObjectMeta* m) {
    m->clear_labels();
    auto& l = *m->mutable_labels();
    l["app"] = absl::StrCat("a", Uniform(0, 7));
    if (Chance(0.7)) l["tier"] = absl::StrCat("t", Uniform(0, 2));
    if (Chance(0.2)) l["team"] = absl::StrCat("x", Uniform(0, 2));
  }
  void RollWorkloadBody(v1::Workload* w) {
    w->clear_addresses();
    switch (Weighted({65, 15, 20})) {
      case 0: w->add_addresses(EndpointIp(false)); break;
      case 1: w->add_addresses(EndpointIp(true)); break;
      default:
        w->add_addresses(EndpointIp(false));
        w->add_addresses(EndpointIp(true));
    }
    w->clear_ports();
    std::set<std::string> used;
    const int n = Uniform(0, 3);
    for (int i = 0; i < n; ++i) {
      const std::string name = Pick(kTargetNames);
      const v1::Protocol proto = Chance(0.8) ? v1::TCP : RandomProto();
      if (!used.insert(absl::StrCat(name, "/", ProtoName(proto))).second) continue;
      v1::EndpointPort* p = w->add_ports();
      p->set_name(name);
      p->set_protocol(proto);
      p->set_port(static_cast<uint32_t>(Uniform(1024, 65535)));
    }
    w->set_node_name(RandomNode());
    RandomConditions(w->mutable_conditions());
    bool has;
    uint32_t wt;
    RandomWeight(&has, &wt);
    if (has) w->set_weight(wt);
    else w->clear_weight();
  }
  v1::Resource NewWorkload(const std::string& ns, const std::string& name, const std::string& source) {
    v1::Resource r;
    v1::Workload* w = r.mutable_workload();
    w->mutable_metadata()->set_namespace_(ns);
    w->mutable_metadata()->set_name(name);
    w->mutable_metadata()->set_source(source);
    RollLabels(w->mutable_metadata());
    RollWorkloadBody(w);
    return r;
  }
  std::string NewWorkloadName() { return absl::StrCat("wl-", next_workload_++); }

  // --- batches --------------------------------------------------------------
  void Upsert(Batch* b, v1::Resource r) {
    const Key k = KeyOf(r);
    b->touched.insert(k);
    sh_->Put(k, r);
    if (b->sync) return;
    // The server fills in the request's source when the resource names none.
    if (Chance(0.5)) MutableMetaOf(&r)->clear_source();
    *b->req.add_upserts() = std::move(r);
  }
  void Delete(Batch* b, const Key& k) {
    b->touched.insert(k);
    sh_->Put(k, std::nullopt);
    if (k.kind == v1::SERVICE) NoteDeletedService(k.ns, k.name);
    if (b->sync) return;
    v1::ResourceRef* ref = b->req.add_deletes();
    ref->set_kind(k.kind);
    ref->set_namespace_(k.ns);
    ref->set_name(k.name);
  }

  // An existing, untouched resource of `kind` in the batch's namespaces.
  std::optional<Key> PickExisting(const Batch& b, v1::Kind kind) {
    for (int tries = 0; tries < 20; ++tries) {
      const std::string& ns = Pick(b.namespaces);
      const Pool& pool = sh_->PoolOf(kind, ns);
      if (pool.items.empty()) continue;
      Key k{kind, ns, Pick(pool.items)};
      if (!b.touched.count(k)) return k;
    }
    return std::nullopt;
  }

  // One random valid mutation (`only` >= 0: that kind of mutation).
  void Mutate(Batch* b, int only = -1) {
    const std::string ns = Pick(b->namespaces);
    switch (only >= 0 ? static_cast<size_t>(only) : Weighted({9, 22, 5, 10, 26, 6, 6, 10, 4})) {
      case 0: {
        const std::string name = NewServiceName(ns, b->touched);
        if (auto r = NewService(ns, name, b->source)) {
          Upsert(b, std::move(*r));
          mix_.Add("svc.create");
          // Usually with slices, like an adapter would send them.
          const v1::Resource* stored = sh_->Find(Key{v1::SERVICE, ns, name});
          if (stored->service().spec().selector().empty() && Chance(0.7)) {
            const int n = Uniform(1, 2);
            for (int i = 0; i < n; ++i) Upsert(b, NewSlice(ns, NewSliceName(name), name, b->source));
          }
        }
        break;
      }
      case 1:
        if (auto k = PickExisting(*b, v1::SERVICE)) {
          if (auto r = ModifyService(*k, *sh_->Find(*k), b)) {
            Upsert(b, std::move(*r));
            mix_.Add("svc.modify");
          }
        }
        break;
      case 2:
        if (auto k = PickExisting(*b, v1::SERVICE)) {
          Delete(b, *k);
          mix_.Add("svc.delete");
          if (Chance(0.5)) {
            const auto& slices = sh_->SlicesOf(k->ns, k->name);
            const std::vector<std::string> names(slices.begin(), slices.end());
            for (const std::string& s : names) {
              const Key sk{v1::ENDPOINT_SLICE, k->ns, s};
              if (!b->touched.count(sk)) Delete(b, sk);
            }
            if (!names.empty()) mix_.Add("svc.delete-with-slices");
          }
        }
        break;
      case 3: {
        std::string target = Chance(0.07) ? absl::StrCat("ghost-", Uniform(0, 20)) : SliceTarget(ns);
        if (target.empty() || !sh_->FitsSlice(ns, target)) break;
        Upsert(b, NewSlice(ns, NewSliceName(target), target, b->source));
        mix_.Add(absl::StartsWith(target, "ghost-") ? "slice.create-orphan" : "slice.create");
        break;
      }
      case 4:
        if (auto k = PickExisting(*b, v1::ENDPOINT_SLICE)) Upsert(b, ModifySlice(*k, *sh_->Find(*k)));
        break;
      case 5:
        if (auto k = PickExisting(*b, v1::ENDPOINT_SLICE)) {
          Delete(b, *k);
          mix_.Add("slice.delete");
        }
        break;
      case 6:
        Upsert(b, NewWorkload(ns, NewWorkloadName(), b->source));
        mix_.Add("workload.create");
        break;
      case 7:
        if (auto k = PickExisting(*b, v1::WORKLOAD)) {
          v1::Resource r = *sh_->Find(*k);
          if (Chance(0.5)) {
            RollLabels(MutableMetaOf(&r));
            mix_.Add("workload.relabel");
          } else {
            RollWorkloadBody(r.mutable_workload());
            mix_.Add("workload.modify");
          }
          Upsert(b, std::move(r));
        }
        break;
      default:
        if (auto k = PickExisting(*b, v1::WORKLOAD)) {
          Delete(b, *k);
          mix_.Add("workload.delete");
        }
    }
  }

  Shadow* shadow() { return sh_; }

 private:
  std::mt19937 rng_;
  Shadow* sh_;
  std::vector<std::string> namespaces_;
  std::map<std::string, std::string> source_of_;
  std::map<std::string, std::vector<std::string>> deleted_services_;
  uint32_t next_v4_ = 1, next_v6_ = 1;
  uint64_t next_service_ = 0, next_slice_ = 0, next_workload_ = 0;
  Mix mix_;
};

// ---------------------------------------------------------------------------

struct Invalid {
  std::string what;
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

class RandomSync {
 public:
  RandomSync(uint32_t seed) : seed_(seed), gen_(seed, &shadow_) {}

  void Run();

 private:
  // Every resource, through List's pages.
  v1::ListResponse ListAll() {
    v1::ListRequest req;
    v1::ListResponse all;
    do {
      absl::StatusOr<v1::ListResponse> page = svc_->List(req);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (v1::Resource& r : *page->mutable_resources()) *all.add_resources() = std::move(r);
      all.set_revision(page->revision());
      req.set_page_token(page->next_page_token());
    } while (!req.page_token().empty());
    return all;
  }
  server::State ListState() {
    const v1::ListResponse resp = ListAll();
    server::State st;
    for (const v1::Resource& r : resp.resources()) st.objects[KeyOf(r)] = r;
    st.revision = resp.revision();
    return st;
  }
  std::string ListBytes() { return Serialize(ListAll()); }

  void InitialLoad(int services);
  void RandomOp(int op);
  bool AddInvalid(Batch* b, Invalid* inv);
  bool AddInvalidSync(Batch* b, Invalid* inv);
  void Checkpoint(const std::string& where);
  void FreshCheck();

  // Sends a batch the shadow already holds; expects success, keeps the shadow.
  void SendValid(Batch& b, const std::string& where);
  // A Sync of everything the shadow holds for `source`.
  v1::SyncRequest SyncRequestFor(const std::string& source) const;

  uint32_t seed_;
  Shadow shadow_;
  Gen gen_;
  std::unique_ptr<dp::NftDataplane> dp_;
  std::unique_ptr<server::WriteEngine> svc_;
  server::EngineOptions opts_;
  int invalid_sent_ = 0, invalid_text_checked_ = 0, valid_sent_ = 0, syncs_ = 0, dry_runs_ = 0, noops_ = 0;
  std::map<std::string, int> invalid_mix_;
  double nft_list_seconds_ = 0;
  int nft_lists_ = 0;

 public:
  bool fatal_ = false;
  std::string Stats() const {
    std::string inv;
    for (const auto& [k, v] : invalid_mix_) absl::StrAppend(&inv, k, "=", v, " ");
    return absl::StrCat("valid requests ", valid_sent_, " (syncs ", syncs_, ", dry runs ", dry_runs_, ", no-op re-applies ",
                        noops_, "), invalid ", invalid_sent_, " (kernel text compared for ", invalid_text_checked_,
                        ")\n  mutations: ", gen_.mix().ToString(), "\n  invalid: ", inv, "\n  nft list: ", nft_lists_,
                        " calls, ", nft_list_seconds_, " s");
  }
};

v1::SyncRequest RandomSync::SyncRequestFor(const std::string& source) const {
  v1::SyncRequest req;
  req.set_source(source);
  for (const auto& [k, r] : shadow_.objects()) {
    if (MetaOf(r).source() == source) *req.add_resources() = r;
  }
  return req;
}

void RandomSync::SendValid(Batch& b, const std::string& where) {
  absl::Status s;
  if (b.sync) {
    v1::SyncResponse resp;
    s = svc_->Sync(SyncRequestFor(b.source), &resp);
  } else {
    v1::ApplyResponse resp;
    s = svc_->Apply(b.req, &resp);
  }
  if (!s.ok()) {
    shadow_.Rollback();
    ADD_FAILURE() << where << ": a valid " << (b.sync ? "Sync" : "Apply") << " failed: " << s
                  << (b.sync ? "" : "\nrequest: " + b.req.ShortDebugString().substr(0, 4000));
    fatal_ = true;
    return;
  }
  shadow_.Commit();
  ++valid_sent_;
}

void RandomSync::InitialLoad(int services) {
  const auto& nss = gen_.namespaces();
  const int per_ns = std::max(1, services / static_cast<int>(nss.size()));
  for (const std::string& source : {std::string(""), std::string("adapter-a"), std::string("adapter-b")}) {
    Batch b;
    b.source = source;
    b.req.set_source(source);
    auto flush = [&](bool force) {
      if (b.req.upserts_size() == 0 || (!force && b.req.upserts_size() < 3000)) return;
      SendValid(b, "initial load");
      b.req.Clear();
      b.req.set_source(source);
      b.touched.clear();
    };
    for (const std::string& ns : gen_.NamespacesOf(source)) {
      b.namespaces = {ns};
      for (int i = 0; i < 12; ++i) gen_.Upsert(&b, gen_.NewWorkload(ns, gen_.NewWorkloadName(), source));
      for (int i = 0; i < per_ns; ++i) {
        const std::string name = gen_.NewServiceName(ns, b.touched);
        auto r = gen_.NewService(ns, name, source);
        if (!r) continue;
        const bool selector = !r->service().spec().selector().empty();
        gen_.Upsert(&b, std::move(*r));
        if (selector) continue;
        const int slices = static_cast<int>(gen_.Weighted({10, 50, 28, 12}));
        for (int k = 0; k < slices; ++k) gen_.Upsert(&b, gen_.NewSlice(ns, gen_.NewSliceName(name), name, source));
      }
      flush(false);
      if (fatal_) return;
    }
    flush(true);
    if (fatal_) return;
  }
}

bool RandomSync::AddInvalid(Batch* b, Invalid* inv) {
  Gen& g = gen_;
  const std::string ns = g.Pick(b->namespaces);
  auto fresh_service = [&](const std::string& name) {
    v1::Resource r;
    v1::Service* s = r.mutable_service();
    s->mutable_metadata()->set_namespace_(ns);
    s->mutable_metadata()->set_name(name);
    s->mutable_spec()->set_type(v1::ServiceSpec::CLUSTER_IP);
    s->mutable_spec()->add_cluster_ips(g.NewClusterIp(false));
    v1::ServicePort* p = s->mutable_spec()->add_ports();
    p->set_port(80);
    return r;
  };
  auto add_upsert = [&](v1::Resource r) {
    *b->req.add_upserts() = std::move(r);
    const int n = b->req.upserts_size();
    b->req.mutable_upserts()->SwapElements(n - 1, g.Uniform(0, n - 1));
  };
  auto add_delete = [&](const Key& k, uint64_t version) {
    v1::ResourceRef* ref = b->req.add_deletes();
    ref->set_kind(k.kind);
    ref->set_namespace_(k.ns);
    ref->set_name(k.name);
    ref->set_resource_version(version);
    const int n = b->req.deletes_size();
    b->req.mutable_deletes()->SwapElements(n - 1, g.Uniform(0, n - 1));
  };
  // A random service anywhere with a cluster IP.
  auto any_service_with_vip = [&]() -> const v1::Resource* {
    for (int tries = 0; tries < 30; ++tries) {
      const std::string& ons = g.Pick(g.namespaces());
      const Pool& pool = shadow_.PoolOf(v1::SERVICE, ons);
      if (pool.items.empty()) continue;
      const v1::Resource* r = shadow_.Find(Key{v1::SERVICE, ons, g.Pick(pool.items)});
      if (r && r->service().spec().cluster_ips_size() > 0 && r->service().spec().ports_size() > 0) return r;
    }
    return nullptr;
  };

  switch (g.Weighted({14, 10, 8, 6, 30, 8, 8, 8, 8})) {
    case 0: {  // another service's cluster IP + port + protocol
      const v1::Resource* x = any_service_with_vip();
      if (x == nullptr) return false;
      const v1::ServiceSpec& xs = x->service().spec();
      v1::Resource r;
      std::optional<Key> y;
      if (g.Chance(0.4)) y = g.PickExisting(*b, v1::SERVICE);
      if (y && !(y->ns == x->service().metadata().namespace_() && y->name == x->service().metadata().name())) {
        r = *shadow_.Find(*y);
        inv->what = "vip-clash(modify)";
      } else {
        r = fresh_service(g.NewServiceName(ns, b->touched));
        inv->what = "vip-clash(create)";
      }
      v1::ServiceSpec* spec = r.mutable_service()->mutable_spec();
      spec->set_type(v1::ServiceSpec::CLUSTER_IP);
      spec->clear_external_name();
      spec->clear_cluster_ips();
      spec->add_cluster_ips(xs.cluster_ips(g.Uniform(0, xs.cluster_ips_size() - 1)));
      spec->clear_ports();
      v1::ServicePort* p = spec->add_ports();
      p->set_port(xs.ports(0).port());
      p->set_protocol(xs.ports(0).protocol());
      add_upsert(std::move(r));
      return true;
    }
    case 1: {  // a node port another service has
      std::vector<std::string> nps;
      for (auto it = shadow_.slot_owners().lower_bound("np/"); it != shadow_.slot_owners().end() && absl::StartsWith(it->first, "np/"); ++it) {
        nps.push_back(it->first);
      }
      if (nps.empty()) return false;
      std::vector<std::string> parts = absl::StrSplit(g.Pick(nps), '/');
      v1::Resource r = fresh_service(g.NewServiceName(ns, b->touched));
      v1::ServiceSpec* spec = r.mutable_service()->mutable_spec();
      spec->set_type(v1::ServiceSpec::NODE_PORT);
      v1::ServicePort* p = spec->mutable_ports(0);
      v1::Protocol proto = v1::TCP;
      v1::Protocol_Parse(parts[2], &proto);
      p->set_protocol(proto);
      p->set_node_port(static_cast<uint32_t>(std::stoul(parts[1])));
      inv->what = "nodeport-clash";
      add_upsert(std::move(r));
      return true;
    }
    case 2: {  // a slice for a selector service
      for (const std::string& sns : b->namespaces) {
        const auto& sel = shadow_.SelectorServices(sns);
        if (sel.empty()) continue;
        auto it = sel.begin();
        std::advance(it, g.Uniform(0, static_cast<int>(sel.size()) - 1));
        add_upsert(g.NewSlice(sns, g.NewSliceName(*it), *it, ""));
        inv->what = "slice-for-selector-service";
        return true;
      }
      return false;
    }
    case 3: {  // a selector on a service that owns slices
      for (int tries = 0; tries < 20; ++tries) {
        auto y = g.PickExisting(*b, v1::SERVICE);
        if (!y || shadow_.SlicesOf(y->ns, y->name).empty()) continue;
        v1::Resource r = *shadow_.Find(*y);
        (*r.mutable_service()->mutable_spec()->mutable_selector())["app"] = "a1";
        add_upsert(std::move(r));
        inv->what = "selector-on-service-with-slices";
        return true;
      }
      return false;
    }
    case 4: {  // a bad field, on a new or an existing resource
      const int variant = g.Uniform(0, 18);
      inv->what = absl::StrCat("bad-field-", variant);
      v1::Resource r;
      std::optional<Key> existing;
      const v1::Kind kind = variant <= 12 || variant == 15 ? v1::SERVICE : variant <= 14 ? v1::ENDPOINT_SLICE : v1::WORKLOAD;
      if (g.Chance(0.5)) existing = g.PickExisting(*b, kind);
      if (existing) {
        r = *shadow_.Find(*existing);
        if (kind == v1::SERVICE && r.service().spec().type() == v1::ServiceSpec::EXTERNAL_NAME) {
          // Make it a plain ClusterIP service first (valid on its own).
          v1::ServiceSpec* spec = r.mutable_service()->mutable_spec();
          spec->set_type(v1::ServiceSpec::CLUSTER_IP);
          spec->clear_external_name();
          spec->add_cluster_ips(g.NewClusterIp(false));
          if (spec->ports_size() == 0) spec->add_ports()->set_port(80);
        }
        inv->what += "(existing)";
      } else if (kind == v1::SERVICE) {
        r = fresh_service(g.NewServiceName(ns, b->touched));
      } else if (kind == v1::ENDPOINT_SLICE) {
        r = g.NewSlice(ns, g.NewSliceName("bad"), "bad", "");
      } else {
        r = g.NewWorkload(ns, g.NewWorkloadName(), "");
      }
      if (existing && g.Chance(0.5)) MutableMetaOf(&r)->clear_source();
      v1::ServiceSpec* spec = kind == v1::SERVICE ? r.mutable_service()->mutable_spec() : nullptr;
      switch (variant) {
        case 0: spec->mutable_ports(0)->set_port(70000); break;
        case 1: spec->mutable_ports(0)->set_port(0); break;
        case 2: spec->set_cluster_ips(0, "198.19.300.7"); break;
        case 3: {
          const bool v6 = spec->cluster_ips(0).find(':') != std::string::npos;
          spec->add_cluster_ips(g.NewClusterIp(v6));
          break;
        }
        case 4:
          spec->set_type(v1::ServiceSpec::CLUSTER_IP);
          spec->mutable_ports(0)->set_node_port(30000 + g.Uniform(0, 2767));
          break;
        case 5:  // outside the node-port range (passes the resource check, fails the state check)
          spec->set_type(v1::ServiceSpec::NODE_PORT);
          for (auto& p : *spec->mutable_ports()) p.set_node_port(g.Pick(std::vector<uint32_t>{29999, 32768, 40000, 1}));
          break;
        case 6:
          spec->set_type(v1::ServiceSpec::NODE_PORT);
          spec->mutable_ports(0)->set_node_port(0);
          break;
        case 7: r.mutable_service()->mutable_metadata()->set_name("Bad_Name"); break;
        case 8: r.mutable_service()->mutable_metadata()->set_name(absl::StrCat(g.Uniform(1, 9), "lives")); break;
        case 9: {  // two ports, one without a name
          v1::ServicePort* q = spec->add_ports();
          q->set_port(spec->ports(0).port() == 9 ? 10 : 9);
          q->set_protocol(v1::TCP);
          spec->mutable_ports(0)->clear_name();
          break;
        }
        case 10: {  // the same port/protocol twice
          v1::ServicePort q = spec->ports(0);
          q.set_name("dup");
          q.set_node_port(0);
          if (spec->ports(0).name().empty()) spec->mutable_ports(0)->set_name("orig");
          *spec->add_ports() = q;
          break;
        }
        case 11:
          spec->set_session_affinity(v1::ServiceSpec::CLIENT_IP);
          spec->mutable_session_affinity_timeout()->set_seconds(g.Chance(0.5) ? 0 : 90000);
          break;
        case 12: spec->mutable_ports(0)->set_protocol(static_cast<v1::Protocol>(7)); break;
        case 13: {
          v1::EndpointSlice* s = r.mutable_endpoint_slice();
          if (s->endpoints_size() == 0) g.RandomEndpoint(4, s->add_endpoints());
          s->mutable_endpoints(g.Uniform(0, s->endpoints_size() - 1))->set_weight(10001);
          break;
        }
        case 14: {
          v1::EndpointSlice* s = r.mutable_endpoint_slice();
          if (g.Chance(0.5)) {
            s->add_endpoints();  // no addresses
          } else {
            s->clear_service_name();
          }
          break;
        }
        case 15:
          spec->set_type(v1::ServiceSpec::EXTERNAL_NAME);
          spec->set_external_name("x.example.com");
          for (auto& p : *spec->mutable_ports()) p.set_node_port(0);
          spec->clear_load_balancer_ips();
          break;
        case 16: (*r.mutable_workload()->mutable_metadata()->mutable_labels())["app"] = "bad value!"; break;
        case 17: r.mutable_workload()->clear_addresses(); break;
        default: r.mutable_workload()->add_addresses("not-an-ip"); break;
      }
      add_upsert(std::move(r));
      return true;
    }
    case 5: {  // stale resourceVersion
      const v1::Kind kind = g.Pick(std::vector<v1::Kind>{v1::SERVICE, v1::ENDPOINT_SLICE, v1::WORKLOAD});
      auto k = g.PickExisting(*b, kind);
      if (!k) return false;
      v1::GetRequest get;
      get.mutable_ref()->set_kind(k->kind);
      get.mutable_ref()->set_namespace_(k->ns);
      get.mutable_ref()->set_name(k->name);
      absl::StatusOr<v1::Resource> got = svc_->Get(get.ref());
      if (!got.ok()) return false;
      const v1::Resource& stored = *got;
      const uint64_t stale = MetaOf(stored).resource_version() + static_cast<uint64_t>(g.Uniform(1, 50));
      inv->code = absl::StatusCode::kAborted;
      if (g.Chance(0.5)) {
        v1::Resource r = *shadow_.Find(*k);
        MutableMetaOf(&r)->set_resource_version(stale);
        add_upsert(std::move(r));
        inv->what = "stale-version(upsert)";
      } else {
        add_delete(*k, stale);
        inv->what = "stale-version(delete)";
      }
      return true;
    }
    case 6: {  // a resource another source owns
      std::vector<std::string> others;
      for (const std::string& ons : g.namespaces()) {
        if (g.SourceOf(ons) != b->source) others.push_back(ons);
      }
      const std::string& ons = g.Pick(others);
      const v1::Kind kind = g.Pick(std::vector<v1::Kind>{v1::SERVICE, v1::ENDPOINT_SLICE, v1::WORKLOAD});
      const Pool& pool = shadow_.PoolOf(kind, ons);
      if (pool.items.empty()) return false;
      const Key k{kind, ons, g.Pick(pool.items)};
      inv->code = absl::StatusCode::kAlreadyExists;
      if (g.Chance(0.5)) {
        v1::Resource r = *shadow_.Find(k);
        MutableMetaOf(&r)->clear_source();
        if (kind == v1::WORKLOAD) g.RollLabels(MutableMetaOf(&r));
        add_upsert(std::move(r));
        inv->what = "foreign-source(upsert)";
      } else {
        add_delete(k, 0);
        inv->what = "foreign-source(delete)";
      }
      return true;
    }
    case 7: {  // the same key twice in one request
      if (b->touched.empty()) {
        v1::Resource w = g.NewWorkload(ns, g.NewWorkloadName(), "");
        add_upsert(w);
        add_upsert(w);
      } else {
        auto it = b->touched.begin();
        std::advance(it, g.Uniform(0, static_cast<int>(b->touched.size()) - 1));
        // Upserted in this batch: upsert it again; deleted: delete it again.
        if (const v1::Resource* r = shadow_.Find(*it); r != nullptr) {
          add_upsert(*r);
        } else {
          add_delete(*it, 0);
        }
      }
      inv->what = "duplicate-key";
      return true;
    }
    default: {  // deleting what does not exist
      const v1::Kind kind = g.Pick(std::vector<v1::Kind>{v1::SERVICE, v1::ENDPOINT_SLICE, v1::WORKLOAD});
      add_delete(Key{kind, ns, absl::StrCat("missing-", g.Uniform(0, 1000000))}, 0);
      inv->what = "delete-missing";
      inv->code = absl::StatusCode::kNotFound;
      return true;
    }
  }
}

bool RandomSync::AddInvalidSync(Batch* b, Invalid* inv) {
  Gen& g = gen_;
  if (g.Chance(0.5)) {
    // A resource of another source, re-sent under this source.
    const std::string ons = g.Pick(g.NamespacesOf(""));
    const Pool& pool = shadow_.PoolOf(v1::SERVICE, ons);
    if (pool.items.empty()) return false;
    v1::Resource r = *shadow_.Find(Key{v1::SERVICE, ons, g.Pick(pool.items)});
    MutableMetaOf(&r)->set_source(b->source);
    shadow_.Put(KeyOf(r), r);  // staged only: the batch is rolled back
    inv->what = "sync-foreign-resource";
    inv->code = absl::StatusCode::kAlreadyExists;
    return true;
  }
  // A new service of this source on another service's frontend.
  for (int tries = 0; tries < 30; ++tries) {
    const std::string& ons = g.Pick(g.namespaces());
    const Pool& pool = shadow_.PoolOf(v1::SERVICE, ons);
    if (pool.items.empty()) continue;
    const v1::Resource* x = shadow_.Find(Key{v1::SERVICE, ons, g.Pick(pool.items)});
    if (!x || x->service().spec().cluster_ips_size() == 0 || x->service().spec().ports_size() == 0) continue;
    const std::string ns = g.Pick(b->namespaces);
    v1::Resource r;
    v1::Service* s = r.mutable_service();
    s->mutable_metadata()->set_namespace_(ns);
    s->mutable_metadata()->set_name(g.NewServiceName(ns, b->touched));
    s->mutable_metadata()->set_source(b->source);
    s->mutable_spec()->add_cluster_ips(x->service().spec().cluster_ips(0));
    v1::ServicePort* p = s->mutable_spec()->add_ports();
    p->set_port(x->service().spec().ports(0).port());
    p->set_protocol(x->service().spec().ports(0).protocol());
    // Put directly (bypassing the slot index check): this is the clash.
    shadow_.Put(KeyOf(r), r);
    inv->what = "sync-vip-clash";
    return true;
  }
  return false;
}

void RandomSync::RandomOp(int op) {
  Gen& g = gen_;
  const std::string where = absl::StrCat("op ", op);
  // Which kind of request.
  enum { kApply, kSync, kInvalidApply, kInvalidSync, kDryRun, kNoop, kDrift, kMassSync, kWipe };
  const int kind = static_cast<int>(g.Weighted({870, 30, 47, 3, 20, 20, 4, 3, 3}));
  Batch b;
  if (kind == kSync || kind == kInvalidSync || kind == kMassSync) {
    b.source = "adapter-b";
    b.sync = true;
  } else {
    b.source = g.Pick(std::vector<std::string>{"", "", "", "adapter-a", "adapter-a", "adapter-b"});
  }
  b.req.set_source(b.source);
  b.namespaces = g.NamespacesOf(b.source);
  shadow_.Begin();

  if (kind == kMassSync) {
    // The source drops a large part of what it owns at once.
    const double p = 0.4 + 0.6 * std::uniform_real_distribution<double>(0, 1)(g.rng());
    std::vector<Key> drop;
    for (const auto& [k, r] : shadow_.objects()) {
      if (MetaOf(r).source() == b.source && g.Chance(p)) drop.push_back(k);
    }
    for (const Key& k : drop) g.Delete(&b, k);
    // Dropping a selector service can leave no conflict; dropping a slice
    // never creates one; nothing else is needed for validity.
    g.mix().Add("mass-sync");
    g.mix().n["mass-sync.deleted"] += static_cast<int>(drop.size());
    ++syncs_;
    SendValid(b, where);
    if (!fatal_) Checkpoint(absl::StrCat("after the mass sync of op ", op));
    return;
  }
  if (kind == kWipe) {
    // One request deletes a namespace's services and slices (and some
    // workloads) and creates new services there.
    const std::string ns = g.Pick(b.namespaces);
    b.namespaces = {ns};
    for (v1::Kind k : {v1::SERVICE, v1::ENDPOINT_SLICE, v1::WORKLOAD}) {
      const std::vector<std::string> names = shadow_.PoolOf(k, ns).items;
      for (const std::string& name : names) {
        if (k != v1::WORKLOAD || g.Chance(0.5)) g.Delete(&b, Key{k, ns, name});
      }
    }
    const int creates = g.Uniform(20, 60);
    for (int i = 0; i < creates; ++i) g.Mutate(&b, /*only=*/0);
    g.mix().Add("namespace-wipe");
    SendValid(b, where);
    if (!fatal_) Checkpoint(absl::StrCat("after the namespace wipe of op ", op));
    return;
  }
  if (kind == kDrift) {
    // Someone deletes the table; the next write that changes a service
    // finds the kernel refusing the delta and must replace the table whole,
    // keeping the service-port indexes.
    const int mutations = g.Uniform(0, 5);
    for (int i = 0; i < mutations; ++i) g.Mutate(&b);
    bool forced = false;
    for (int tries = 0; tries < 10 && !forced; ++tries) {
      const std::string ns = g.Pick(b.namespaces);
      const std::string name = g.NewServiceName(ns, b.touched);
      auto r = g.NewService(ns, name, b.source);
      if (r && r->service().spec().type() != v1::ServiceSpec::EXTERNAL_NAME) {
        g.Upsert(&b, std::move(*r));
        forced = true;
      }
    }
    if (!forced) {
      SendValid(b, where);
      return;
    }
    int status = 0;
    const std::string out = ::nftproxy::Run(absl::StrCat("nft delete table inet ", kTable), &status);
    EXPECT_EQ(status, 0) << "nft delete table: " << out;
    g.mix().Add("drift(table deleted)");
    SendValid(b, where);
    if (!fatal_) Checkpoint(absl::StrCat("after the drift repair of op ", op));
    return;
  }
  if (kind == kNoop) {
    // Re-send stored resources unchanged: no kernel work, no new revision.
    const int n = g.Uniform(1, 5);
    for (int i = 0; i < n; ++i) {
      const v1::Kind k = g.Pick(std::vector<v1::Kind>{v1::SERVICE, v1::ENDPOINT_SLICE, v1::WORKLOAD});
      if (auto key = g.PickExisting(b, k)) {
        b.touched.insert(*key);
        *b.req.add_upserts() = *shadow_.Find(*key);
      }
    }
  } else {
    const int mutations = g.Uniform(1, 10);
    for (int i = 0; i < mutations; ++i) g.Mutate(&b);
  }

  Invalid inv;
  bool invalid = false;
  if (kind == kInvalidApply) invalid = AddInvalid(&b, &inv);
  if (kind == kInvalidSync) invalid = AddInvalidSync(&b, &inv);
  if (kind == kInvalidApply || kind == kInvalidSync) {
    if (!invalid) {
      // Nothing to break here; send it as a normal request.
      SendValid(b, where);
      return;
    }
  }
  if (!invalid && kind != kDryRun && kind != kNoop) {
    if (kind == kSync) ++syncs_;
    SendValid(b, where);
    return;
  }

  // A request that must change nothing: invalid, dry run or no-op.
  // The kernel's generation id (bumped by any nf_tables commit), the stored
  // state and the dataplane's indexes are compared for all of them; the
  // kernel listing too for the first invalid requests and then every 15th
  // (listing ~80,000 lines costs ~0.7 s).
  const bool compare_text = invalid && (invalid_text_checked_ < 3 || invalid_sent_ % 15 == 0);
  const std::string list_before = ListBytes();
  const uint32_t gen_before = KernelGenId();
  std::string kernel_before;
  if (compare_text) kernel_before = KernelListing(kTable);
  const dp::IndexMap indexes_before = dp_->indexes();

  absl::Status s;
  std::string req_text;
  if (b.sync) {
    v1::SyncResponse resp;
    s = svc_->Sync(SyncRequestFor(b.source), &resp);
  } else {
    if (kind == kDryRun) b.req.set_dry_run(true);
    v1::ApplyResponse resp;
    s = svc_->Apply(b.req, &resp);
    req_text = b.req.ShortDebugString();
    if (kind == kNoop && s.ok()) {
      for (const std::string& o : resp.outcomes()) {
        EXPECT_EQ(o, "unchanged") << where << ": no-op re-apply reported " << o << "; request: " << req_text;
      }
    }
  }
  shadow_.Rollback();

  const std::string label =
      invalid ? absl::StrCat("invalid request (", inv.what, ")") : kind == kDryRun ? "dry-run request" : "no-op re-apply";
  if (invalid) {
    ++invalid_sent_;
    ++invalid_mix_[inv.what];
    if (s.ok()) {
      ADD_FAILURE() << where << ": " << label << " succeeded; request: " << req_text.substr(0, 3000);
      fatal_ = true;  // the shadow no longer matches
      return;
    }
    EXPECT_EQ(s.code(), inv.code) << where << ": " << label << " failed with an unexpected code: " << s;
  } else {
    if (kind == kDryRun) ++dry_runs_;
    else ++noops_;
    if (!s.ok()) {
      ADD_FAILURE() << where << ": " << label << " failed: " << s << "; request: " << req_text.substr(0, 3000);
      return;
    }
  }
  EXPECT_EQ(KernelGenId(), gen_before) << where << ": " << label << " committed to the kernel (" << s << ")";
  EXPECT_TRUE(ListBytes() == list_before) << where << ": " << label << " changed the stored state (" << s << ")";
  EXPECT_TRUE(dp_->indexes() == indexes_before) << where << ": " << label << " changed the dataplane's indexes";
  if (compare_text) {
    ++invalid_text_checked_;
    const std::string after = KernelListing(kTable);
    if (after != kernel_before) {
      ADD_FAILURE() << where << ": " << label << " changed the kernel listing:\n"
                    << DiffListings(Normalize(kernel_before), Normalize(after));
    }
  }
}

void RandomSync::Checkpoint(const std::string& where) {
  SCOPED_TRACE(where);
  const server::State state = ListState();

  // The server's state is what the test sent.
  {
    size_t mismatches = 0;
    std::string first;
    auto it = shadow_.objects().begin();
    for (const auto& [k, r] : state.objects) {
      while (it != shadow_.objects().end() && it->first < k) {
        if (mismatches++ == 0) first = absl::StrCat("missing from the server: ", Describe(it->first));
        ++it;
      }
      if (it == shadow_.objects().end() || k < it->first) {
        if (mismatches++ == 0) first = absl::StrCat("unexpected on the server: ", Describe(k));
        continue;
      }
      // The server stores defaults spelled out as left out (ClearExplicitDefaults).
      v1::Resource sent = UserPart(it->second);
      ClearExplicitDefaults(&sent);
      if (Serialize(UserPart(r)) != Serialize(sent)) {
        if (mismatches++ == 0) {
          first = absl::StrCat("differs: ", Describe(k), "\n  server: ", UserPart(r).ShortDebugString(),
                               "\n  sent:   ", sent.ShortDebugString());
        }
      }
      ++it;
    }
    for (; it != shadow_.objects().end(); ++it) {
      if (mismatches++ == 0) first = absl::StrCat("missing from the server: ", Describe(it->first));
    }
    EXPECT_EQ(mismatches, 0u) << "stored state differs from what was sent; first: " << first;
  }

  const dp::Model model = server::BuildModel(server::Desired(state), kNode, opts_.node);

  // (d) the dataplane got exactly the services the state implies.
  const dp::Model installed = dp_->InstalledModel();
  if (installed.services != model.services) {
    std::string first;
    size_t i = 0, j = 0;
    while (i < installed.services.size() || j < model.services.size()) {
      const dp::Service* a = i < installed.services.size() ? &installed.services[i] : nullptr;
      const dp::Service* e = j < model.services.size() ? &model.services[j] : nullptr;
      if (a && e && a->Key() == e->Key()) {
        if (*a != *e) {
          first = absl::StrCat("service ", e->Key(), " differs in ", FirstDifference(*a, *e),
                               " (dataplane vs expected)\n  dataplane: ", DescribeService(*a).substr(0, 1000),
                               "\n  expected:  ", DescribeService(*e).substr(0, 1000));
          break;
        }
        ++i, ++j;
      } else if (e == nullptr || (a && a->Key() < e->Key())) {
        first = absl::StrCat("the dataplane has service ", a->Key(), " that the state does not: ", DescribeService(*a));
        break;
      } else {
        first = absl::StrCat("the dataplane lacks service ", e->Key(), ": ", DescribeService(*e));
        break;
      }
    }
    ADD_FAILURE() << "InstalledModel() != BuildModel(state) (" << installed.services.size() << " vs "
                  << model.services.size() << " services): " << first;
  }

  // (e) indexes: unique, and exactly the service ports that get objects.
  {
    std::map<uint32_t, std::string> by_index;
    for (const auto& [key, index] : dp_->indexes()) {
      auto [it, fresh] = by_index.emplace(index, key);
      EXPECT_TRUE(fresh) << "index " << index << " is held by both " << it->second << " and " << key;
    }
    std::set<std::string> want;
    for (const dp::Service& s : model.services) {
      for (std::string& k : dp::IndexKeys(s)) want.insert(std::move(k));
    }
    std::set<std::string> have;
    for (const auto& [key, index] : dp_->indexes()) have.insert(key);
    if (want != have) {
      std::vector<std::string> extra, missing;
      std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(extra));
      std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing));
      ADD_FAILURE() << "index keys differ from the model's service ports: " << extra.size()
                    << " stale (first: " << (extra.empty() ? "-" : extra[0]) << "), " << missing.size()
                    << " missing (first: " << (missing.empty() ? "-" : missing[0]) << ")";
    }
  }

  // (a)-(c) the kernel equals a fresh compile with the same indexes.
  const std::string expected = dp::Render(dp::Compile(model, kTable, &dp_->indexes(), dp_->shards()));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string kernel = KernelListing(kTable);
  nft_list_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++nft_lists_;
  const std::string diff = DiffListings(Normalize(expected), Normalize(kernel));
  EXPECT_TRUE(diff.empty()) << "kernel ruleset != Render(Compile(BuildModel(state))) for " << model.services.size()
                            << " services:\n" << diff;
}

void RandomSync::FreshCheck() {
  SCOPED_TRACE("fresh dataplane");
  const dp::Model model = server::BuildModel(server::Desired(ListState()), kNode, opts_.node);
  auto fresh = dp::NftDataplane::Create(kFreshTable);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  dp::ApplyResult result;
  ASSERT_TRUE((*fresh)->Apply(model, &result).ok());
  EXPECT_TRUE(result.full);
  const std::string expected = dp::Render(dp::Compile(model, kFreshTable));
  const std::string kernel = KernelListing(kFreshTable);
  const std::string diff = DiffListings(Normalize(expected), Normalize(kernel));
  EXPECT_TRUE(diff.empty()) << "fresh table != Render(Compile(model)):\n" << diff;
  // After one full commit even the order of sets, maps and chains is Render()'s.
  const std::string order = DiffListings(Normalize(expected, false), Normalize(kernel, false), 10);
  EXPECT_TRUE(order.empty()) << "fresh table lists its blocks in another order than Render():\n" << order;
}

void RandomSync::Run() {
  const int services = static_cast<int>(EnvInt("NFTPROXY_RANDOM_SERVICES", 3000));
  const int ops = static_cast<int>(EnvInt("NFTPROXY_RANDOM_OPS", 2000));
  const int every = std::max<int>(1, static_cast<int>(EnvInt("NFTPROXY_RANDOM_CHECKPOINT", 250)));

  auto dp = dp::NftDataplane::Create(kTable);
  ASSERT_TRUE(dp.ok()) << dp.status();
  dp_ = std::move(*dp);
  opts_.node_name = kNode;
  opts_.node.cluster_cidrs = {*dp::Cidr::Parse("198.18.0.0/16"), *dp::Cidr::Parse("fd00:18::/64")};
  svc_ = std::make_unique<server::WriteEngine>(dp_.get(), opts_);

  const auto t0 = std::chrono::steady_clock::now();
  InitialLoad(services);
  ASSERT_FALSE(fatal_);
  const auto t1 = std::chrono::steady_clock::now();
  Checkpoint("after the initial load");
  const auto t2 = std::chrono::steady_clock::now();
  for (int op = 1; op <= ops && !fatal_; ++op) {
    RandomOp(op);
    if (op % every == 0 || op == ops) Checkpoint(absl::StrCat("checkpoint after op ", op));
    if (::testing::Test::HasFailure()) break;  // stop at the first divergence; it is the one to debug
  }
  const auto t3 = std::chrono::steady_clock::now();
  if (!::testing::Test::HasFailure()) FreshCheck();
  const auto t4 = std::chrono::steady_clock::now();
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  size_t n_services = 0, n_slices = 0, n_workloads = 0;
  for (const auto& [k, r] : shadow_.objects()) {
    (k.kind == v1::SERVICE ? n_services : k.kind == v1::ENDPOINT_SLICE ? n_slices : n_workloads)++;
  }
  printf("[random_sync] seed %u: %zu services, %zu slices, %zu workloads at the end; %zu indexes, %u shards\n", seed_,
         n_services, n_slices, n_workloads, dp_->indexes().size(), dp_->shards());
  printf("[random_sync] %s\n", Stats().c_str());
  printf("[random_sync] time: initial load %.1f s, first check %.1f s, ops+checks %.1f s, fresh %.1f s\n",
         secs(t0, t1), secs(t1, t2), secs(t2, t3), secs(t3, t4));
}

TEST(RandomSync, KernelMatchesFreshCompileAfterRandomWrites) {
  kernel_lab::RequireNetns();
  if (::testing::Test::IsSkipped() || ::testing::Test::HasFailure()) return;
  const uint32_t seed = static_cast<uint32_t>(EnvInt("NFTPROXY_SEED", 20261121));
  SCOPED_TRACE(absl::StrCat("NFTPROXY_SEED=", seed, " (re-run with this seed to reproduce)"));
  RandomSync run(seed);
  run.Run();
}

}  // namespace
}  // namespace nftproxy

int main(int argc, char** argv) { return nftproxy::kernel_lab::Main(argc, argv); }
