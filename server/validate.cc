#include "server/validate.h"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/ip.h"
#include "common/errors.h"
#include "common/parallel.h"

namespace nftproxy::server {

std::string UnusableAddress(const dp::IpAddr& ip) {
  const auto& b = ip.bytes;
  if (ip.family == dp::Family::kV4) {
    if (b[0] == 127) return "a loopback address";
    if (b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0) return "the unspecified address";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    return "";
  }
  const bool zero10 = std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; });
  if (zero10 && b[10] == 0xff && b[11] == 0xff) {
    return "an IPv4-mapped IPv6 address (write the IPv4 address; IPv4 packets never match an IPv6 one)";
  }
  const bool zero15 = zero10 && b[10] == 0 && b[11] == 0 && b[12] == 0 && b[13] == 0 && b[14] == 0;
  if (zero15 && b[15] == 1) return "a loopback address";
  if (zero15 && b[15] == 0) return "the unspecified address";
  if (b[0] == 0xff) return "a multicast address";
  return "";
}

namespace {

constexpr uint32_t kMaxWeight = 10000;
constexpr int64_t kMaxAffinitySeconds = 86400;

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends.
bool IsDns1123Label(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') return false;
  }
  return s.front() != '-' && s.back() != '-';
}

// Port names as Kubernetes' IANA_SVC_NAME: <= 15 chars, at least one letter.
bool IsPortName(const std::string& s) {
  if (!IsDns1123Label(s) || s.size() > 15) return false;
  if (s.find("--") != std::string::npos) return false;
  for (char c : s) if (IsLower(c)) return true;
  return false;
}

bool IsLabelKey(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '/') return false;
  }
  return true;
}

bool IsLabelValue(const std::string& s) {
  if (s.size() > 63) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// Collects the first error with the object's name in front.
class Checker {
 public:
  // The object is named (in errors only) as `service default/web`.
  explicit Checker(const v1::Resource& object) : object_(object) {}

  void Fail(const std::string& field, const std::string& msg) {
    if (status_.ok()) {
      status_ = InvalidField(KeyOf(object_), field, msg);
    }
  }

  void Meta(const v1::ObjectMeta& m, bool dns1035) {
    if (!m.namespace_().empty() && !IsDns1123Label(m.namespace_())) {
      Fail("metadata.namespace", absl::StrCat("\"", m.namespace_(), "\" must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"));
    }
    if (m.name().empty()) {
      Fail("metadata.name", "required");
    } else if (!IsDns1123Label(m.name()) || (dns1035 && !IsLower(m.name()[0]))) {
      Fail("metadata.name", absl::StrCat("\"", m.name(), "\" must be a DNS label (lowercase letters, digits and '-', at most 63 characters", dns1035 ? ", starting with a letter)" : ")"));
    }
    Labels("metadata.labels", m.labels());
  }

  void Labels(const std::string& field, const google::protobuf::Map<std::string, std::string>& labels) {
    for (const auto& [k, v] : labels) {
      if (!IsLabelKey(k)) Fail(absl::StrCat(field, "[", k, "]"), "invalid label key");
      if (!IsLabelValue(v)) Fail(absl::StrCat(field, "[", k, "]"), absl::StrCat("invalid label value \"", v, "\""));
    }
  }

  void Port(const std::string& field, uint32_t port, bool required) {
    if (port == 0 && !required) return;
    if (port < 1 || port > 65535) Fail(field, absl::StrCat(port, " is out of range (1-65535)"));
  }

  void Protocol(const std::string& field, int p) {
    if (!v1::Protocol_IsValid(p)) Fail(field, absl::StrCat("unknown protocol ", p, " (expected TCP, UDP or SCTP)"));
  }

  // Addresses: valid, at most one per family. `field` names the list; it
  // is built only for an error (this runs for every endpoint of a sync).
  void Addresses(absl::FunctionRef<std::string()> field, const google::protobuf::RepeatedPtrField<std::string>& addrs,
                 bool one_per_family) {
    // A set: the lists are bounded, but a linear search per address would
    // make a long one quadratic.
    std::set<dp::IpAddr> seen;
    bool v4 = false, v6 = false;
    for (int i = 0; i < addrs.size(); ++i) {
      auto f = [&] { return absl::StrCat(field(), "[", i, "]"); };
      auto ip = dp::IpAddr::Parse(addrs[i]);
      if (!ip.ok()) {
        Fail(f(), std::string(ip.status().message()));
        continue;
      }
      if (const std::string why = UnusableAddress(*ip); !why.empty()) {
        Fail(f(), absl::StrCat(addrs[i], " is ", why, "; no traffic can be proxied to or from it"));
      }
      if (!seen.insert(*ip).second) Fail(f(), absl::StrCat(addrs[i], " is listed twice"));
      bool& fam = ip->family == dp::Family::kV4 ? v4 : v6;
      if (one_per_family && fam) Fail(f(), "at most one address per IP family");
      fam = true;
    }
  }
  void Addresses(const char* field, const google::protobuf::RepeatedPtrField<std::string>& addrs, bool one_per_family) {
    Addresses([field] { return std::string(field); }, addrs, one_per_family);
  }


  void Weight(absl::FunctionRef<std::string()> field, bool has, uint32_t w) {
    if (has && w > kMaxWeight) Fail(field(), absl::StrCat(w, " is out of range (0-", kMaxWeight, ")"));
  }
  void Weight(const char* field, bool has, uint32_t w) {
    Weight([field] { return std::string(field); }, has, w);
  }

  void EndpointPorts(const std::string& field, const google::protobuf::RepeatedPtrField<v1::EndpointPort>& ports) {
    std::set<std::string> names;
    for (int i = 0; i < ports.size(); ++i) {
      const std::string f = absl::StrCat(field, "[", i, "]");
      const v1::EndpointPort& p = ports[i];
      if (!p.name().empty() && !IsPortName(p.name())) Fail(f + ".name", absl::StrCat("\"", p.name(), "\" is not a valid port name"));
      if (!names.insert(absl::StrCat(p.name(), "/", p.protocol())).second) Fail(f + ".name", absl::StrCat("duplicate port name \"", p.name(), "\""));
      Protocol(f + ".protocol", p.protocol());
      Port(f + ".port", p.port(), true);
    }
  }

  // Fails when `field` lists more than `limit` items.
  bool Count(const char* field, int n, uint32_t limit, const char* flag) {
    if (static_cast<uint64_t>(n) <= limit) return true;
    Fail(field, absl::StrCat(n, " items; at most ", limit, " are allowed (server flag ", flag, ")"));
    return false;
  }

  absl::Status status() const { return status_; }

 private:
  const v1::Resource& object_;
  absl::Status status_;
};

void CheckService(const v1::Service& s, const ResourceLimits& limits, Checker& c) {
  const v1::ServiceSpec& spec = s.spec();
  // Sizes first: nothing else is looked at in a resource that is too large.
  if (!c.Count("spec.ports", spec.ports_size(), limits.ports_per_service, "--max-ports-per-service") ||
      !c.Count("spec.externalIps", spec.external_ips_size(), limits.addresses_per_service,
               "--max-addresses-per-service") ||
      !c.Count("spec.loadBalancerIps", spec.load_balancer_ips_size(), limits.addresses_per_service,
               "--max-addresses-per-service") ||
      !c.Count("spec.loadBalancerSourceRanges", spec.load_balancer_source_ranges_size(),
               limits.addresses_per_service, "--max-addresses-per-service") ||
      !c.Count("spec.clusterIps", spec.cluster_ips_size(), 2, "(one IPv4 and one IPv6)") ||
      !c.Count("spec.selector", spec.selector_size(), limits.labels_per_object, "--max-labels") ||
      !c.Count("metadata.labels", s.metadata().labels_size(), limits.labels_per_object, "--max-labels")) {
    return;
  }
  c.Meta(s.metadata(), /*dns1035=*/true);
  if (!v1::ServiceSpec::Type_IsValid(spec.type())) c.Fail("spec.type", "unknown service type");
  const bool external_name = spec.type() == v1::ServiceSpec::EXTERNAL_NAME;
  if (external_name) {
    if (spec.external_name().empty()) c.Fail("spec.externalName", "required for type EXTERNAL_NAME");
    if (spec.cluster_ips_size() > 0) c.Fail("spec.clusterIps", "must be empty for type EXTERNAL_NAME");
  } else {
    if (!spec.external_name().empty()) c.Fail("spec.externalName", "only allowed for type EXTERNAL_NAME");
    if (spec.cluster_ips_size() == 0) {
      // Headless: nothing in nftables; the DNS responder answers with the
      // ready endpoints' addresses.
      if (spec.type() == v1::ServiceSpec::NODE_PORT || spec.type() == v1::ServiceSpec::LOAD_BALANCER) {
        c.Fail("spec.clusterIps", "required for types NODE_PORT and LOAD_BALANCER (nftproxy does not allocate them; "
                                  "a headless service, without cluster IPs, is CLUSTER_IP)");
      }
      if (spec.external_ips_size() > 0) c.Fail("spec.externalIps", "not allowed on a headless service (no cluster IPs)");
    } else if (spec.ports_size() == 0) {
      c.Fail("spec.ports", "required (at least one port)");
    }
  }
  c.Addresses("spec.clusterIps", spec.cluster_ips(), true);
  c.Addresses("spec.externalIps", spec.external_ips(), false);
  c.Addresses("spec.loadBalancerIps", spec.load_balancer_ips(), false);
  for (int i = 0; i < spec.load_balancer_source_ranges_size(); ++i) {
    auto cidr = dp::Cidr::Parse(spec.load_balancer_source_ranges(i));
    if (!cidr.ok()) c.Fail(absl::StrCat("spec.loadBalancerSourceRanges[", i, "]"), std::string(cidr.status().message()));
  }
  if (!v1::ServiceSpec::TrafficPolicy_IsValid(spec.external_traffic_policy())) c.Fail("spec.externalTrafficPolicy", "unknown traffic policy");
  if (!v1::ServiceSpec::TrafficPolicy_IsValid(spec.internal_traffic_policy())) c.Fail("spec.internalTrafficPolicy", "unknown traffic policy");
  if (!v1::ServiceSpec::SessionAffinity_IsValid(spec.session_affinity())) c.Fail("spec.sessionAffinity", "unknown session affinity");
  if (!v1::ServiceSpec::LoadBalancing_IsValid(spec.load_balancing())) c.Fail("spec.loadBalancing", "unknown load-balancing mode");
  if (spec.has_session_affinity_timeout()) {
    int64_t secs = spec.session_affinity_timeout().seconds();
    if (secs < 1 || secs > kMaxAffinitySeconds) c.Fail("spec.sessionAffinityTimeout", absl::StrCat("must be between 1s and ", kMaxAffinitySeconds, "s"));
  }
  c.Labels("spec.selector", spec.selector());
  std::set<std::string> names;
  std::set<std::pair<uint32_t, int>> ports;
  for (int i = 0; i < spec.ports_size(); ++i) {
    const v1::ServicePort& p = spec.ports(i);
    const std::string f = absl::StrCat("spec.ports[", i, "]");
    if (p.name().empty()) {
      if (spec.ports_size() > 1) c.Fail(f + ".name", "required when the service has more than one port");
    } else if (!IsPortName(p.name())) {
      c.Fail(f + ".name", absl::StrCat("\"", p.name(), "\" is not a valid port name (lowercase letters, digits and '-', at most 15 characters, at least one letter)"));
    }
    if (!p.name().empty() && !names.insert(p.name()).second) c.Fail(f + ".name", absl::StrCat("duplicate port name \"", p.name(), "\""));
    c.Protocol(f + ".protocol", p.protocol());
    c.Port(f + ".port", p.port(), true);
    int proto = p.protocol() == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p.protocol();
    if (p.port() != 0 && !ports.insert({p.port(), proto}).second) {
      c.Fail(f + ".port", absl::StrCat(p.port(), "/", v1::Protocol_Name(static_cast<v1::Protocol>(proto)), " is listed twice"));
    }
    if (p.target_case() == v1::ServicePort::kTargetPort) c.Port(f + ".targetPort", p.target_port(), true);
    if (p.target_case() == v1::ServicePort::kTargetPortName && !IsPortName(p.target_port_name())) {
      c.Fail(f + ".targetPortName", absl::StrCat("\"", p.target_port_name(), "\" is not a valid port name"));
    }
    c.Port(f + ".nodePort", p.node_port(), false);
    const bool node_ports = spec.type() == v1::ServiceSpec::NODE_PORT || spec.type() == v1::ServiceSpec::LOAD_BALANCER;
    if (p.node_port() != 0 && !node_ports) {
      c.Fail(f + ".nodePort", "only allowed for type NODE_PORT or LOAD_BALANCER");
    }
    if (p.node_port() == 0 && spec.type() == v1::ServiceSpec::NODE_PORT) {
      c.Fail(f + ".nodePort", "required for type NODE_PORT (nftproxy does not allocate node ports)");
    }
  }
  if (spec.health_check_node_port() != 0) {
    c.Port("spec.healthCheckNodePort", spec.health_check_node_port(), false);
    if (spec.external_traffic_policy() != v1::ServiceSpec::LOCAL) {
      c.Fail("spec.healthCheckNodePort", "only allowed with externalTrafficPolicy LOCAL");
    }
  }
}

// `i`: the endpoint's position, named only in errors.
void CheckEndpoint(int i, const v1::Endpoint& e, Checker& c) {
  auto field = [i](const char* what) { return absl::StrCat("endpoints[", i, "].", what); };
  if (e.addresses_size() == 0) c.Fail(field("addresses"), "required (one IPv4 and/or one IPv6 address)");
  c.Addresses([&] { return field("addresses"); }, e.addresses(), true);
  c.Weight([&] { return field("weight"); }, e.has_weight(), e.weight());
}

void CheckSlice(const v1::EndpointSlice& s, const ResourceLimits& limits, Checker& c) {
  if (!c.Count("endpoints", s.endpoints_size(), limits.endpoints_per_slice, "--max-endpoints-per-slice") ||
      !c.Count("ports", s.ports_size(), limits.ports_per_slice, "--max-ports-per-slice") ||
      !c.Count("metadata.labels", s.metadata().labels_size(), limits.labels_per_object, "--max-labels")) {
    return;
  }
  for (int i = 0; i < s.endpoints_size(); ++i) {
    // One IPv4 and one IPv6 address at most; a longer list is refused
    // before it is parsed.
    if (s.endpoints(i).addresses_size() > 2) {
      c.Fail(absl::StrCat("endpoints[", i, "].addresses"), "at most one IPv4 and one IPv6 address");
      return;
    }
  }
  c.Meta(s.metadata(), false);
  if (s.service_name().empty()) {
    c.Fail("serviceName", "required");
  } else if (!IsDns1123Label(s.service_name())) {
    c.Fail("serviceName", absl::StrCat("\"", s.service_name(), "\" is not a valid service name"));
  }
  c.EndpointPorts("ports", s.ports());
  for (int i = 0; i < s.endpoints_size(); ++i) CheckEndpoint(i, s.endpoints(i), c);
}

void CheckWorkload(const v1::Workload& w, const ResourceLimits& limits, Checker& c) {
  if (!c.Count("addresses", w.addresses_size(), 2, "(one IPv4 and one IPv6)") ||
      !c.Count("ports", w.ports_size(), limits.ports_per_slice, "--max-ports-per-slice") ||
      !c.Count("metadata.labels", w.metadata().labels_size(), limits.labels_per_object, "--max-labels")) {
    return;
  }
  c.Meta(w.metadata(), false);
  if (w.addresses_size() == 0) c.Fail("addresses", "required (one IPv4 and/or one IPv6 address)");
  c.Addresses("addresses", w.addresses(), true);
  c.EndpointPorts("ports", w.ports());
  c.Weight("weight", w.has_weight(), w.weight());
}

}  // namespace

absl::Status ValidateResource(const v1::Resource& r, const ResourceLimits& limits) {
  if (r.kind_case() == v1::Resource::KIND_NOT_SET) {
    return absl::InvalidArgumentError("resource: kind: one of service, endpointSlice or workload is required");
  }
  Checker c(r);
  switch (r.kind_case()) {
    case v1::Resource::kService: CheckService(r.service(), limits, c); break;
    case v1::Resource::kEndpointSlice: CheckSlice(r.endpoint_slice(), limits, c); break;
    case v1::Resource::kWorkload: CheckWorkload(r.workload(), limits, c); break;
    default: break;
  }
  return c.status();
}

namespace {

// The checks of ValidateChange for one changed key.
absl::Status CheckChanged(const Desired& d, const Key& key, const StateRules& rules) {
  const v1::Resource* r = d.Find(key);
  if (r == nullptr) return absl::OkStatus();
  if (key.kind == v1::ENDPOINT_SLICE) {
    const v1::Resource* svc = d.Find(Key{v1::SERVICE, key.ns, r->endpoint_slice().service_name()});
    if (svc != nullptr && !svc->service().spec().selector().empty()) {
      return InvalidField(key, "serviceName",
                          absl::StrCat("service ", key.ns, "/", svc->service().metadata().name(),
                                       " has a selector, so its endpoints come from workloads; it cannot also own "
                                       "EndpointSlice ",
                                       key.ns, "/", key.name));
    }
    return absl::OkStatus();
  }
  if (key.kind != v1::SERVICE) return absl::OkStatus();
  const v1::Service& s = r->service();
  const std::string me = absl::StrCat(key.ns, "/", key.name);
  for (int i = 0; i < s.spec().ports_size(); ++i) {
    const uint32_t np = s.spec().ports(i).node_port();
    if (np != 0 && (np < rules.node_port_min || np > rules.node_port_max)) {
      return InvalidField(key, absl::StrCat("spec.ports[", i, "].nodePort"),
                          absl::StrCat(np, " is outside the node port range ", rules.node_port_min, "-",
                                       rules.node_port_max, " (server flag --nodeport-range)"));
    }
  }
  const uint32_t hc = s.spec().health_check_node_port();
  if (hc != 0 && (hc < rules.node_port_min || hc > rules.node_port_max)) {
    return InvalidField(key, "spec.healthCheckNodePort",
                        absl::StrCat(hc, " is outside the node port range ", rules.node_port_min, "-",
                                     rules.node_port_max, " (server flag --nodeport-range)"));
  }
  // A health check node port claims its number for every protocol (see
  // SlotsOf), so it clashes with any node port and any other one.
  const std::vector<Slot> slots = SlotsOf(s);
  std::map<std::string_view, const Slot*> mine;  // slot -> the first that claims it
  for (const Slot& slot : slots) {
    auto [it, first] = mine.emplace(slot.name, &slot);
    if (!first) {
      return InvalidField(key, slot.Field(),
                          absl::StrCat(slot.name, " is already used by ", it->second->Field(), " of the same service"));
    }
    for (const std::string& other : d.SlotOwners(slot.name)) {
      if (other == me) continue;
      return InvalidField(key, slot.Field(), absl::StrCat(slot.name, " is already used by service ", other));
    }
  }
  // A service with a selector takes its endpoints from workloads only.
  const std::set<std::string>& slices = d.SlicesOf(key.ns, key.name);
  if (!s.spec().selector().empty() && !slices.empty()) {
    return InvalidField(key, "spec.selector",
                        absl::StrCat("service ", me,
                                     " has a selector, so its endpoints come from workloads; it cannot also own "
                                     "EndpointSlice ",
                                     key.ns, "/", *slices.begin()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateChange(const Desired& d, const std::vector<Key>& changed, const StateRules& rules) {
  // The state before the write was consistent, so any clash involves a
  // resource the write changed: checking those is enough. They are checked
  // on all cores; the error reported is the first in `changed`'s order.
  std::vector<absl::Status> results(changed.size());
  ParallelFor(changed.size(), 1024, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) results[i] = CheckChanged(d, changed[i], rules);
  });
  for (absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateState(const State& state, const std::vector<Key>& changed, const StateRules& rules) {
  return ValidateChange(Desired(state), changed, rules);
}

}  // namespace nftproxy::server
