#include "server/model_builder.h"

#include <algorithm>
#include <map>
#include <set>
#include "common/parallel.h"

namespace nftproxy::server {
namespace {

dp::L4Proto ToL4(v1::Protocol p) {
  switch (p) {
    case v1::UDP: return dp::L4Proto::kUdp;
    case v1::SCTP: return dp::L4Proto::kSctp;
    default: return dp::L4Proto::kTcp;
  }
}

v1::Protocol Normalize(v1::Protocol p) { return p == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p; }

dp::LbMode ToLb(v1::ServiceSpec::LoadBalancing lb) {
  switch (lb) {
    case v1::ServiceSpec::ROUND_ROBIN: return dp::LbMode::kRoundRobin;
    case v1::ServiceSpec::SOURCE_HASH: return dp::LbMode::kSourceHash;
    default: return dp::LbMode::kRandom;
  }
}

// One candidate endpoint before the readiness decision.
struct Candidate {
  const google::protobuf::RepeatedPtrField<std::string>* addresses;
  const v1::EndpointConditions* conditions;
  bool has_weight;
  uint32_t weight;
  uint16_t port;
  bool local;
};

bool Serving(const v1::EndpointConditions& c) { return c.has_serving() ? c.serving() : EndpointReady(c); }
bool Terminating(const v1::EndpointConditions& c) { return c.has_terminating() && c.terminating(); }

// The port an endpoint serves a service port on, or 0 when it has none.
uint16_t ResolvePort(const v1::ServicePort& sp, const google::protobuf::RepeatedPtrField<v1::EndpointPort>& ports,
                     bool from_slice) {
  const v1::Protocol proto = Normalize(sp.protocol());
  auto find = [&](const std::string& name) -> uint16_t {
    for (const v1::EndpointPort& p : ports) {
      if (p.name() == name && Normalize(p.protocol()) == proto) return static_cast<uint16_t>(p.port());
    }
    return 0;
  };
  switch (sp.target_case()) {
    case v1::ServicePort::kTargetPort:
      return static_cast<uint16_t>(sp.target_port());
    case v1::ServicePort::kTargetPortName: {
      uint16_t by_target = find(sp.target_port_name());
      if (by_target != 0 || !from_slice) return by_target;
      return find(sp.name());
    }
    default: {
      // Slices list their ports under the service port's name.
      if (from_slice) {
        if (uint16_t p = find(sp.name()); p != 0) return p;
      }
      return static_cast<uint16_t>(sp.port());
    }
  }
}

// Ready endpoints serve; when none is ready, serving and terminating ones do
// (so that a rolling restart does not blackhole a service).
std::vector<dp::Backend> ChooseBackends(const std::vector<Candidate>& cands) {
  // Readiness is decided over the whole service; the LOCAL subsets are
  // chosen by the compiler from the `local` flag.
  bool any_ready = false;
  for (const Candidate& c : cands) any_ready |= EndpointReady(*c.conditions);
  std::vector<dp::Backend> out;
  std::set<std::pair<dp::IpAddr, uint16_t>> seen;
  for (const Candidate& c : cands) {
    const bool usable = any_ready ? EndpointReady(*c.conditions)
                                  : Serving(*c.conditions) && Terminating(*c.conditions);
    if (!usable || c.port == 0) continue;
    const uint32_t weight = c.has_weight ? c.weight : 1;
    if (weight == 0) continue;
    for (const std::string& a : *c.addresses) {
      auto ip = dp::IpAddr::Parse(a);
      if (!ip.ok() || !seen.insert({*ip, c.port}).second) continue;
      out.push_back(dp::Backend{*ip, c.port, weight, c.local});
    }
  }
  std::sort(out.begin(), out.end(), [](const dp::Backend& a, const dp::Backend& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.port < b.port;
  });
  return out;
}

dp::Policy ToPolicy(v1::ServiceSpec::TrafficPolicy p) {
  return p == v1::ServiceSpec::LOCAL ? dp::Policy::kLocal : dp::Policy::kCluster;
}

std::vector<dp::IpAddr> Addrs(const google::protobuf::RepeatedPtrField<std::string>& list) {
  std::set<dp::IpAddr> out;
  for (const std::string& a : list) {
    if (auto ip = dp::IpAddr::Parse(a); ip.ok()) out.insert(*ip);
  }
  return {out.begin(), out.end()};
}

}  // namespace

std::optional<dp::Service> BuildService(const Desired& d, const std::string& ns, const std::string& name,
                                        const std::string& node_name) {
  const v1::Resource* res = d.Find(Key{v1::SERVICE, ns, name});
  if (res == nullptr) return std::nullopt;
  const v1::ServiceSpec& spec = res->service().spec();
  if (spec.type() == v1::ServiceSpec::EXTERNAL_NAME) return std::nullopt;
  dp::Service svc;
  svc.ns = ns;
  svc.name = name;
  svc.lb = ToLb(spec.load_balancing());
  svc.cluster_ips = Addrs(spec.cluster_ips());
  svc.external_ips = Addrs(spec.external_ips());
  if (spec.type() == v1::ServiceSpec::LOAD_BALANCER) svc.lb_ips = Addrs(spec.load_balancer_ips());
  for (const std::string& r : spec.load_balancer_source_ranges()) {
    if (auto c = dp::Cidr::Parse(r); c.ok()) svc.lb_source_ranges.push_back(*c);
  }
  svc.external_policy = ToPolicy(spec.external_traffic_policy());
  svc.internal_policy = ToPolicy(spec.internal_traffic_policy());
  if (spec.session_affinity() == v1::ServiceSpec::CLIENT_IP) {
    svc.affinity_timeout_s = static_cast<uint32_t>(std::max<int64_t>(1, AffinityTimeoutSeconds(spec)));
  }
  const bool node_ports =
      spec.type() == v1::ServiceSpec::NODE_PORT || spec.type() == v1::ServiceSpec::LOAD_BALANCER;

  // Where the endpoints come from: the namespace's workloads the selector
  // matches, or the slices that name the service.
  std::vector<const v1::Workload*> workloads;
  std::vector<const v1::EndpointSlice*> slices;
  if (!spec.selector().empty()) {
    const State& state = d.state();
    for (auto it = state.objects.lower_bound(Key{v1::WORKLOAD, ns, ""});
         it != state.objects.end() && it->first.kind == v1::WORKLOAD && it->first.ns == ns; ++it) {
      if (SelectorMatches(spec.selector(), it->second.workload().metadata().labels())) workloads.push_back(&it->second.workload());
    }
  } else {
    for (const std::string& slice : d.SlicesOf(ns, name)) {
      slices.push_back(&d.Find(Key{v1::ENDPOINT_SLICE, ns, slice})->endpoint_slice());
    }
  }
  for (const v1::ServicePort& sp : spec.ports()) {
    std::vector<Candidate> cands;
    for (const v1::Workload* w : workloads) {
      cands.push_back(Candidate{&w->addresses(), &w->conditions(), w->has_weight(), w->weight(),
                                ResolvePort(sp, w->ports(), false), w->node_name() == node_name});
    }
    for (const v1::EndpointSlice* s : slices) {
      const uint16_t port = ResolvePort(sp, s->ports(), true);
      for (const v1::Endpoint& e : s->endpoints()) {
        cands.push_back(Candidate{&e.addresses(), &e.conditions(), e.has_weight(), e.weight(), port,
                                  e.node_name() == node_name});
      }
    }
    dp::ServicePort port;
    port.name = sp.name();
    port.proto = ToL4(sp.protocol());
    port.port = static_cast<uint16_t>(sp.port());
    if (node_ports) port.node_port = static_cast<uint16_t>(sp.node_port());
    port.backends = ChooseBackends(cands);
    svc.ports.push_back(std::move(port));
  }
  if (svc.cluster_ips.empty() && svc.external_ips.empty() && svc.lb_ips.empty()) {
    bool any_node_port = false;
    for (const dp::ServicePort& p : svc.ports) any_node_port |= p.node_port != 0;
    if (!any_node_port) return std::nullopt;
  }
  return svc;
}

dp::Model BuildModel(const Desired& d, const std::string& node_name, const dp::NodeSettings& node) {
  dp::Model model;
  model.node = node;
  const State& state = d.state();
  std::vector<const Key*> keys;
  for (auto it = state.objects.lower_bound(Key{v1::SERVICE, "", ""});
       it != state.objects.end() && it->first.kind == v1::SERVICE; ++it) {
    keys.push_back(&it->first);
  }
  // Services are built independently of each other: on all cores.
  std::vector<std::optional<dp::Service>> built(keys.size());
  ParallelFor(keys.size(), 1024, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) built[i] = BuildService(d, keys[i]->ns, keys[i]->name, node_name);
  });
  model.services.reserve(built.size());
  for (std::optional<dp::Service>& svc : built) {
    if (svc) model.services.push_back(std::move(*svc));
  }
  return model;
}

std::set<std::pair<std::string, std::string>> AffectedServices(const Txn& txn) {
  std::set<std::pair<std::string, std::string>> out;
  const Desired& d = txn.desired();
  for (const auto& [key, old] : txn.undo()) {
    const v1::Resource* now = d.Find(key);
    switch (key.kind) {
      case v1::SERVICE:
        out.insert({key.ns, key.name});
        break;
      case v1::ENDPOINT_SLICE:
        if (old) out.insert({key.ns, old->endpoint_slice().service_name()});
        if (now) out.insert({key.ns, now->endpoint_slice().service_name()});
        break;
      case v1::WORKLOAD:
        for (const std::string& name : d.SelectorServices(key.ns)) {
          const auto& selector = d.Find(Key{v1::SERVICE, key.ns, name})->service().spec().selector();
          if ((old && SelectorMatches(selector, old->workload().metadata().labels())) ||
              (now && SelectorMatches(selector, now->workload().metadata().labels()))) {
            out.insert({key.ns, name});
          }
        }
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace nftproxy::server
