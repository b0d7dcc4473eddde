// Just over 600 lines: one translator per Kubernetes kind, each best read next to the others.
#include "manifest/k8s_manifest.h"

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

namespace v1 = ::nftproxy::v1;

using Names = std::set<std::string>;

// Bookkeeping metadata a proxy has no use for.
const Names kSilentMeta = {"uid", "resourceVersion", "creationTimestamp", "managedFields", "annotations",
                           "ownerReferences", "generation", "selfLink", "finalizers", "deletionTimestamp",
                           "deletionGracePeriodSeconds", "generateName"};

std::string Position(const YamlNode& n) {
  if (!n.IsDefined()) return "";
  return manifest::Position(n.Mark());
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

std::string Index(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

absl::Status Error(const YamlNode& n, const std::string& path, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat(Position(n), path, ": ", msg));
}

bool Absent(const YamlNode& n) { return !n.IsDefined() || n.IsNull(); }

class Translator {
 public:
  std::vector<std::string> warnings;
  const YamlNode* selector = nullptr;

  void Warn(const YamlNode& n, const std::string& path, const std::string& msg) {
    warnings.push_back(absl::StrCat(Position(n), path, ": ", msg));
  }

  // Calls `handle` for every key of the mapping `n`. `handle` returns false
  // for keys it does not know: those get a warning unless in `silent`.
  absl::Status Fields(const YamlNode& n, const std::string& path, const Names& silent,
                      const std::function<absl::StatusOr<bool>(const std::string&, const YamlNode&,
                                                               const std::string&)>& handle) {
    if (Absent(n)) return absl::OkStatus();
    if (!n.IsMap()) return Error(n, path, "expected a mapping");
    for (const auto& kv : n.Entries()) {
      if (!kv.first.IsScalar()) return Error(kv.first, path, "a key must be a string");
      const std::string key = kv.first.Scalar();
      const std::string p = Join(path, key);
      absl::StatusOr<bool> known = handle(key, kv.second, p);
      if (!known.ok()) return known.status();
      if (!*known && silent.count(key) == 0) Warn(kv.first, p, "unknown field, ignored");
    }
    return absl::OkStatus();
  }

  // Calls `item` for every element of the sequence `n` (absent: none).
  absl::Status Items(const YamlNode& n, const std::string& path,
                     const std::function<absl::Status(const YamlNode&, const std::string&)>& item) {
    if (Absent(n)) return absl::OkStatus();
    if (!n.IsSequence()) return Error(n, path, "expected a list");
    size_t i = 0;
    for (const YamlNode& e : n.Items()) {
      if (auto s = item(e, Index(path, i++)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  static absl::StatusOr<std::string> String(const YamlNode& n, const std::string& path) {
    if (Absent(n)) return std::string();
    if (!n.IsScalar()) return Error(n, path, "expected a string");
    return n.Scalar();
  }

  absl::Status Strings(const YamlNode& n, const std::string& path,
                       google::protobuf::RepeatedPtrField<std::string>* out) {
    return Items(n, path, [&](const YamlNode& e, const std::string& p) -> absl::Status {
      absl::StatusOr<std::string> s = String(e, p);
      if (!s.ok()) return s.status();
      *out->Add() = *s;
      return absl::OkStatus();
    });
  }

  absl::Status StringMap(const YamlNode& n, const std::string& path,
                         google::protobuf::Map<std::string, std::string>* out) {
    if (Absent(n)) return absl::OkStatus();
    if (!n.IsMap()) return Error(n, path, "expected a mapping of strings");
    for (const auto& kv : n.Entries()) {
      const std::string p = absl::StrCat(path, "[", kv.first.IsScalar() ? kv.first.Scalar() : "?", "]");
      if (!kv.first.IsScalar() || !(kv.second.IsScalar() || kv.second.IsNull())) {
        return Error(kv.second, p, "expected a string");
      }
      (*out)[kv.first.Scalar()] = kv.second.IsNull() ? "" : kv.second.Scalar();
    }
    return absl::OkStatus();
  }

  static absl::StatusOr<uint32_t> Number(const YamlNode& n, const std::string& path, uint32_t max) {
    uint32_t v = 0;
    if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v) || v > max) {
      return Error(n, path, absl::StrCat("expected a whole number from 0 to ", max));
    }
    return v;
  }

  static absl::StatusOr<std::optional<bool>> Bool(const YamlNode& n, const std::string& path) {
    if (Absent(n)) return std::optional<bool>();
    if (n.IsScalar() && n.Scalar() == "true") return std::optional<bool>(true);
    if (n.IsScalar() && n.Scalar() == "false") return std::optional<bool>(false);
    return Error(n, path, "expected true or false");
  }

  static absl::StatusOr<v1::Protocol> Protocol(const YamlNode& n, const std::string& path) {
    absl::StatusOr<std::string> s = String(n, path);
    if (!s.ok()) return s.status();
    if (s->empty() || *s == "TCP") return v1::TCP;
    if (*s == "UDP") return v1::UDP;
    if (*s == "SCTP") return v1::SCTP;
    return Error(n, path, absl::StrCat("protocol \"", *s, "\" is not supported (TCP, UDP or SCTP)"));
  }

  // One of `values` (Kubernetes spelling) mapped to an enum; absent: `dflt`.
  template <typename E>
  static absl::StatusOr<E> Enum(const YamlNode& n, const std::string& path,
                                const std::vector<std::pair<std::string, E>>& values, E dflt) {
    absl::StatusOr<std::string> s = String(n, path);
    if (!s.ok()) return s.status();
    if (s->empty()) return dflt;
    std::vector<std::string> names;
    for (const auto& [name, e] : values) {
      if (*s == name) return e;
      names.push_back(name);
    }
    return Error(n, path, absl::StrCat("\"", *s, "\" is not supported (expected ", absl::StrJoin(names, ", "), ")"));
  }

  absl::Status Metadata(const YamlNode& n, v1::ObjectMeta* m) {
    if (Absent(n)) return Error(n, "metadata", "required (with a name)");
    auto s = Fields(n, "metadata", kSilentMeta, [&](const std::string& k, const YamlNode& v,
                                                    const std::string& p) -> absl::StatusOr<bool> {
      if (k == "name" || k == "namespace") {
        absl::StatusOr<std::string> str = String(v, p);
        if (!str.ok()) return str.status();
        k == "name" ? m->set_name(*str) : m->set_namespace_(*str);
        return true;
      }
      if (k == "labels") {
        if (auto st = StringMap(v, p, m->mutable_labels()); !st.ok()) return st;
        return true;
      }
      return false;
    });
    if (!s.ok()) return s;
    if (m->name().empty()) return Error(n, "metadata.name", "required");
    return absl::OkStatus();
  }

  // `name` and `protocol` of a service or endpoint port; false for other keys.
  template <typename Port>
  static absl::StatusOr<bool> NameOrProtocol(const std::string& k, const YamlNode& v, const std::string& p,
                                             Port* port) {
    if (k == "name") {
      absl::StatusOr<std::string> str = String(v, p);
      if (!str.ok()) return str.status();
      port->set_name(*str);
      return true;
    }
    if (k == "protocol") {
      absl::StatusOr<v1::Protocol> proto = Protocol(v, p);
      if (!proto.ok()) return proto.status();
      port->set_protocol(*proto);
      return true;
    }
    return false;
  }

  // ---- Service -------------------------------------------------------------

  absl::Status ServicePort(const YamlNode& n, const std::string& path, v1::ServicePort* port) {
    bool has_port = false;
    port->set_protocol(v1::TCP);  // Kubernetes' default
    auto s = Fields(n, path, {"appProtocol"}, [&](const std::string& k, const YamlNode& v,
                                                   const std::string& p) -> absl::StatusOr<bool> {
      if (absl::StatusOr<bool> done = NameOrProtocol(k, v, p, port); !done.ok() || *done) return done;
      if (k == "port" || k == "nodePort") {
        absl::StatusOr<uint32_t> num = Number(v, p, 65535);
        if (!num.ok()) return num.status();
        k == "port" ? port->set_port(*num) : port->set_node_port(*num);
        has_port |= k == "port";
      } else if (k == "targetPort") {
        if (!v.IsScalar()) return Error(v, p, "expected a port number or a port name");
        uint32_t num = 0;
        if (absl::SimpleAtoi(v.Scalar(), &num)) {
          if (num < 1 || num > 65535) return Error(v, p, absl::StrCat(num, " is out of range (1-65535)"));
          port->set_target_port(num);
        } else {
          port->set_target_port_name(v.Scalar());
        }
      } else {
        return false;
      }
      return true;
    });
    if (!s.ok()) return s;
    if (!has_port) return Error(n, Join(path, "port"), "required");
    return absl::OkStatus();
  }

  absl::Status ServiceSpec(const YamlNode& n, v1::ServiceSpec* spec) {
    using S = v1::ServiceSpec;
    const std::vector<std::pair<std::string, S::TrafficPolicy>> policies = {
        {"Cluster", S::CLUSTER}, {"Local", S::LOCAL}, {"Global", S::CLUSTER}, {"OnlyLocal", S::LOCAL}};
    std::vector<std::string> cluster_ip, cluster_ips;
    const YamlNode* ip_node = &n;
    auto s = Fields(n, "spec",
                    {"ipFamilies", "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass",
                     "publishNotReadyAddresses", "trafficDistribution"},
                    [&](const std::string& k, const YamlNode& v, const std::string& p) -> absl::StatusOr<bool> {
      absl::Status st;
      if (k == "type") {
        absl::StatusOr<S::Type> t = Enum<S::Type>(v, p, {{"ClusterIP", S::CLUSTER_IP}, {"NodePort", S::NODE_PORT},
                                                         {"LoadBalancer", S::LOAD_BALANCER},
                                                         {"ExternalName", S::EXTERNAL_NAME}}, S::CLUSTER_IP);
        if (!t.ok()) return t.status();
        spec->set_type(*t);
      } else if (k == "clusterIP" || k == "clusterIPs") {
        ip_node = &v;
        google::protobuf::RepeatedPtrField<std::string> ips;
        if (k == "clusterIP") {
          absl::StatusOr<std::string> ip = String(v, p);
          if (!ip.ok()) return ip.status();
          if (!ip->empty()) cluster_ip.push_back(*ip);
        } else {
          st = Strings(v, p, &ips);
          cluster_ips.assign(ips.begin(), ips.end());
        }
      } else if (k == "ports") {
        st = Items(v, p, [&](const YamlNode& e, const std::string& ep) {
          return ServicePort(e, ep, spec->add_ports());
        });
      } else if (k == "externalIPs") {
        st = Strings(v, p, spec->mutable_external_ips());
      } else if (k == "loadBalancerSourceRanges") {
        st = Strings(v, p, spec->mutable_load_balancer_source_ranges());
      } else if (k == "externalTrafficPolicy" || k == "internalTrafficPolicy") {
        absl::StatusOr<S::TrafficPolicy> t = Enum<S::TrafficPolicy>(v, p, policies, S::CLUSTER);
        if (!t.ok()) return t.status();
        k == "externalTrafficPolicy" ? spec->set_external_traffic_policy(*t) : spec->set_internal_traffic_policy(*t);
      } else if (k == "sessionAffinity") {
        absl::StatusOr<S::SessionAffinity> a =
            Enum<S::SessionAffinity>(v, p, {{"None", S::NONE}, {"ClientIP", S::CLIENT_IP}}, S::NONE);
        if (!a.ok()) return a.status();
        spec->set_session_affinity(*a);
      } else if (k == "sessionAffinityConfig") {
        st = Fields(v, p, {}, [&](const std::string& k2, const YamlNode& v2, const std::string& p2) -> absl::StatusOr<bool> {
          if (k2 != "clientIP") return false;
          auto st2 = Fields(v2, p2, {}, [&](const std::string& k3, const YamlNode& v3,
                                            const std::string& p3) -> absl::StatusOr<bool> {
            if (k3 != "timeoutSeconds") return false;
            absl::StatusOr<uint32_t> secs = Number(v3, p3, 86400);
            if (!secs.ok()) return secs.status();
            spec->mutable_session_affinity_timeout()->set_seconds(*secs);
            return true;
          });
          if (!st2.ok()) return st2;
          return true;
        });
      } else if (k == "selector") {
        // The control plane's input, not a proxy's: see the header.
        if (!Absent(v)) selector = &v;
      } else if (k == "externalName") {
        absl::StatusOr<std::string> name = String(v, p);
        if (!name.ok()) return name.status();
        spec->set_external_name(*name);
      } else if (k == "healthCheckNodePort") {
        absl::StatusOr<uint32_t> num = Number(v, p, 65535);
        if (!num.ok()) return num.status();
        spec->set_health_check_node_port(*num);
      } else if (k == "loadBalancerIP") {
        Warn(v, p, "ignored: the load-balancer address is taken from status.loadBalancer.ingress");
      } else {
        return false;
      }
      if (!st.ok()) return st;
      return true;
    });
    if (!s.ok()) return s;
    const std::vector<std::string>& ips = cluster_ips.empty() ? cluster_ip : cluster_ips;
    const char* field = cluster_ips.empty() ? "spec.clusterIP" : "spec.clusterIPs";
    for (const std::string& ip : ips) {
      if (ip == "None") {  // headless: no cluster IP; DNS answers with the endpoints
        spec->clear_cluster_ips();
        return absl::OkStatus();
      }
      *spec->add_cluster_ips() = ip;
    }
    if (spec->type() == S::EXTERNAL_NAME) {
      spec->clear_cluster_ips();
    } else if (spec->cluster_ips().empty()) {
      return Error(*ip_node, field,
                   "required: nftproxy does not allocate cluster IPs (a Service read from a cluster, e.g. "
                   "`kubectl get service NAME -o yaml`, has it)");
    }
    return absl::OkStatus();
  }

  absl::Status ServiceStatus(const YamlNode& n, v1::ServiceSpec* spec) {
    return Fields(n, "status", {"conditions"}, [&](const std::string& k, const YamlNode& v,
                                                    const std::string& p) -> absl::StatusOr<bool> {
      if (k != "loadBalancer") return false;
      auto st = Fields(v, p, {}, [&](const std::string& k2, const YamlNode& v2,
                                     const std::string& p2) -> absl::StatusOr<bool> {
        if (k2 != "ingress") return false;
        auto st2 = Items(v2, p2, [&](const YamlNode& e, const std::string& ep) -> absl::Status {
          std::string ip, mode;
          auto st3 = Fields(e, ep, {"ports"}, [&](const std::string& k3, const YamlNode& v3,
                                                  const std::string& p3) -> absl::StatusOr<bool> {
            if (k3 == "hostname") {
              Warn(v3, p3, "ignored: nftproxy needs load-balancer IP addresses, not names");
              return true;
            }
            if (k3 != "ip" && k3 != "ipMode") return false;
            absl::StatusOr<std::string> str = String(v3, p3);
            if (!str.ok()) return str.status();
            (k3 == "ip" ? ip : mode) = *str;
            return true;
          });
          if (!st3.ok()) return st3;
          if (mode == "Proxy") {
            Warn(e, ep, "ipMode Proxy: not programmed (the load balancer forwards to the nodes itself)");
          } else if (!ip.empty()) {
            *spec->add_load_balancer_ips() = ip;
          }
          return absl::OkStatus();
        });
        if (!st2.ok()) return st2;
        return true;
      });
      if (!st.ok()) return st;
      return true;
    });
  }

  absl::Status Service(const YamlNode& doc, K8sTranslation* out) {
    v1::Resource r;
    v1::Service* svc = r.mutable_service();
    bool has_spec = false;
    if (auto st = Metadata(doc.Get("metadata"), svc->mutable_metadata()); !st.ok()) return st;
    auto s = Fields(doc, "", {"apiVersion", "kind"}, [&](const std::string& k, const YamlNode& v,
                                                         const std::string& p) -> absl::StatusOr<bool> {
      if (k == "metadata") return true;  // above
      if (k == "spec") {
        has_spec = true;
        if (auto st = ServiceSpec(v, svc->mutable_spec()); !st.ok()) return st;
        return true;
      }
      if (k == "status") {
        if (auto st = ServiceStatus(v, svc->mutable_spec()); !st.ok()) return st;
        return true;
      }
      return false;
    });
    if (!s.ok()) return s;
    if (!has_spec) return Error(doc, "spec", "required");
    out->resources.push_back(std::move(r));
    return absl::OkStatus();
  }

  // ---- EndpointSlice -------------------------------------------------------

  absl::Status EndpointPort(const YamlNode& n, const std::string& path, v1::EndpointPort* port) {
    bool has_port = false;
    port->set_protocol(v1::TCP);  // Kubernetes' default
    auto s = Fields(n, path, {"appProtocol"}, [&](const std::string& k, const YamlNode& v,
                                                   const std::string& p) -> absl::StatusOr<bool> {
      if (absl::StatusOr<bool> done = NameOrProtocol(k, v, p, port); !done.ok() || *done) return done;
      if (k == "port") {
        if (Absent(v)) return true;
        absl::StatusOr<uint32_t> num = Number(v, p, 65535);
        if (!num.ok()) return num.status();
        port->set_port(*num);
        has_port = true;
      } else {
        return false;
      }
      return true;
    });
    if (!s.ok()) return s;
    if (!has_port) return Error(n, Join(path, "port"), "required (a port for all ports is not supported)");
    return absl::OkStatus();
  }

  absl::Status Conditions(const YamlNode& n, const std::string& path, v1::EndpointConditions* c) {
    return Fields(n, path, {}, [&](const std::string& k, const YamlNode& v,
                                   const std::string& p) -> absl::StatusOr<bool> {
      if (k != "ready" && k != "serving" && k != "terminating") return false;
      absl::StatusOr<std::optional<bool>> b = Bool(v, p);
      if (!b.ok()) return b.status();
      if (!b->has_value()) return true;
      if (k == "ready") c->set_ready(**b);
      if (k == "serving") c->set_serving(**b);
      if (k == "terminating") c->set_terminating(**b);
      return true;
    });
  }

  absl::Status SliceEndpoint(const YamlNode& n, const std::string& path, v1::Endpoint* e) {
    return Fields(n, path, {"targetRef", "hints", "deprecatedTopology"},
                  [&](const std::string& k, const YamlNode& v, const std::string& p) -> absl::StatusOr<bool> {
      absl::Status st;
      if (k == "addresses") {
        st = Strings(v, p, e->mutable_addresses());
      } else if (k == "conditions") {
        st = Conditions(v, p, e->mutable_conditions());
      } else if (k == "nodeName" || k == "zone" || k == "hostname") {
        absl::StatusOr<std::string> str = String(v, p);
        if (!str.ok()) return str.status();
        if (k == "nodeName") e->set_node_name(*str);
        if (k == "zone") e->set_zone(*str);
        if (k == "hostname") e->set_hostname(*str);
      } else {
        return false;
      }
      if (!st.ok()) return st;
      return true;
    });
  }

  absl::Status EndpointSlice(const YamlNode& doc, K8sTranslation* out) {
    v1::Resource r;
    v1::EndpointSlice* slice = r.mutable_endpoint_slice();
    if (auto st = Metadata(doc.Get("metadata"), slice->mutable_metadata()); !st.ok()) return st;
    auto s = Fields(doc, "", {"apiVersion", "kind"}, [&](const std::string& k, const YamlNode& v,
                                                         const std::string& p) -> absl::StatusOr<bool> {
      absl::Status st;
      if (k == "metadata") return true;
      if (k == "addressType") {
        absl::StatusOr<std::string> t = String(v, p);
        if (!t.ok()) return t.status();
        if (*t != "IPv4" && *t != "IPv6") {
          return Error(v, p, absl::StrCat("\"", *t, "\" is not supported (IPv4 or IPv6)"));
        }
      } else if (k == "endpoints") {
        st = Items(v, p, [&](const YamlNode& e, const std::string& ep) {
          return SliceEndpoint(e, ep, slice->add_endpoints());
        });
      } else if (k == "ports") {
        st = Items(v, p, [&](const YamlNode& e, const std::string& ep) {
          return EndpointPort(e, ep, slice->add_ports());
        });
      } else {
        return false;
      }
      if (!st.ok()) return st;
      return true;
    });
    if (!s.ok()) return s;
    auto it = slice->metadata().labels().find("kubernetes.io/service-name");
    if (it == slice->metadata().labels().end() || it->second.empty()) {
      return Error(doc.Get("metadata"), "metadata.labels[kubernetes.io/service-name]",
                   "required: it names the Service this slice belongs to");
    }
    slice->set_service_name(it->second);
    out->resources.push_back(std::move(r));
    return absl::OkStatus();
  }

  // ---- Endpoints -----------------------------------------------------------

  absl::Status Address(const YamlNode& n, const std::string& path, bool ready, v1::Endpoint* e) {
    if (!ready) e->mutable_conditions()->set_ready(false);
    bool has_ip = false;
    auto s = Fields(n, path, {"targetRef"}, [&](const std::string& k, const YamlNode& v,
                                                 const std::string& p) -> absl::StatusOr<bool> {
      if (k != "ip" && k != "hostname" && k != "nodeName") return false;
      absl::StatusOr<std::string> str = String(v, p);
      if (!str.ok()) return str.status();
      if (k == "ip") *e->add_addresses() = *str;
      if (k == "hostname") e->set_hostname(*str);
      if (k == "nodeName") e->set_node_name(*str);
      has_ip |= k == "ip" && !str->empty();
      return true;
    });
    if (!s.ok()) return s;
    if (!has_ip) return Error(n, Join(path, "ip"), "required");
    return absl::OkStatus();
  }

  absl::Status Endpoints(const YamlNode& doc, K8sTranslation* out) {
    v1::ObjectMeta meta;
    if (auto st = Metadata(doc.Get("metadata"), &meta); !st.ok()) return st;
    std::vector<v1::Resource> slices;
    auto s = Fields(doc, "", {"apiVersion", "kind"}, [&](const std::string& k, const YamlNode& v,
                                                         const std::string& p) -> absl::StatusOr<bool> {
      if (k == "metadata") return true;
      if (k != "subsets") return false;
      auto st = Items(v, p, [&](const YamlNode& sub, const std::string& sp) -> absl::Status {
        v1::Resource r;
        v1::EndpointSlice* slice = r.mutable_endpoint_slice();
        *slice->mutable_metadata() = meta;
        if (!slices.empty()) slice->mutable_metadata()->set_name(absl::StrCat(meta.name(), "-", slices.size() + 1));
        slice->set_service_name(meta.name());
        auto st2 = Fields(sub, sp, {}, [&](const std::string& k2, const YamlNode& v2,
                                           const std::string& p2) -> absl::StatusOr<bool> {
          absl::Status st3;
          if (k2 == "addresses" || k2 == "notReadyAddresses") {
            st3 = Items(v2, p2, [&](const YamlNode& a, const std::string& ap) {
              return Address(a, ap, k2 == "addresses", slice->add_endpoints());
            });
          } else if (k2 == "ports") {
            st3 = Items(v2, p2, [&](const YamlNode& e, const std::string& ep) {
              return EndpointPort(e, ep, slice->add_ports());
            });
          } else {
            return false;
          }
          if (!st3.ok()) return st3;
          return true;
        });
        if (!st2.ok()) return st2;
        slices.push_back(std::move(r));
        return absl::OkStatus();
      });
      if (!st.ok()) return st;
      return true;
    });
    if (!s.ok()) return s;
    if (slices.empty()) {
      // No subsets: the service has no endpoints; say so with an empty slice.
      v1::Resource r;
      *r.mutable_endpoint_slice()->mutable_metadata() = meta;
      r.mutable_endpoint_slice()->set_service_name(meta.name());
      slices.push_back(std::move(r));
    }
    for (v1::Resource& r : slices) out->resources.push_back(std::move(r));
    return absl::OkStatus();
  }
};

std::string ScalarAt(const YamlNode& doc, const char* key) {
  const YamlNode& n = doc.Get(key);
  return n.IsDefined() && n.IsScalar() ? n.Scalar() : "";
}

}  // namespace

bool IsKubernetesObject(const std::string& api_version, const std::string& kind) {
  return (api_version == "v1" && (kind == "Service" || kind == "Endpoints")) ||
         (api_version == "discovery.k8s.io/v1" && kind == "EndpointSlice");
}

absl::StatusOr<K8sTranslation> TranslateKubernetes(const YamlNode& doc) {
  try {
    if (!doc.IsMap()) return absl::InvalidArgumentError(absl::StrCat(Position(doc), "expected a mapping"));
    const std::string kind = ScalarAt(doc, "kind");
    Translator t;
    K8sTranslation out;
    absl::Status s;
    if (kind == "Service") {
      s = t.Service(doc, &out);
    } else if (kind == "EndpointSlice") {
      s = t.EndpointSlice(doc, &out);
    } else if (kind == "Endpoints") {
      s = t.Endpoints(doc, &out);
    } else {
      s = absl::InvalidArgumentError(absl::StrCat("kind \"", kind, "\" is not a Kubernetes kind nftproxy translates"));
    }
    if (!s.ok()) return s;
    out.warnings = std::move(t.warnings);
    if (t.selector != nullptr && !out.resources.empty()) out.selector = t.selector->Mark();
    return out;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the document: ", e.what()));
  }
}

absl::StatusOr<K8sTranslation> TranslateKubernetes(const YAML::Node& doc) {
  try {
    return TranslateKubernetes(FromYamlCpp(doc));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the document: ", e.what()));
  }
}

}  // namespace nftproxy::manifest
