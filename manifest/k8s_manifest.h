// Kubernetes manifests as users already have them (`kubectl get -o yaml`
// exports, chart output) translated to nftproxy resources:
//
//   v1 Service                      -> Service
//   discovery.k8s.io/v1 EndpointSlice -> EndpointSlice (serviceName from the
//                                       kubernetes.io/service-name label)
//   v1 Endpoints                    -> EndpointSlice named after the Endpoints
//                                       (one per subset: NAME, NAME-2, ...;
//                                       notReadyAddresses become ready: false)
//
// What a Kubernetes proxy reads is translated: type, clusterIP(s), ports
// (targetPort number or name, nodePort), externalIPs, status.loadBalancer
// ingress IPs (except ipMode: Proxy), loadBalancerSourceRanges, traffic
// policies, session affinity and its timeout, externalName,
// healthCheckNodePort; endpoints with their conditions, node, zone and
// hostname; headless services (clusterIP: None) become services without
// cluster IPs (answered by the DNS responder, nothing in nftables). Not translated, on purpose:
//  - spec.selector: in Kubernetes it is the input of the control plane's
//    endpoint controller; a proxy uses the EndpointSlices it produced. Apply
//    those with the Service; the manifest reader warns when an input has a
//    Service with a selector and no slices for it. (nftproxy's own selector
//    selects Workloads and would exclude EndpointSlices.)
// Bookkeeping fields (uid, resourceVersion, creationTimestamp, managedFields,
// annotations, ownerReferences, ...) and fields without meaning for a proxy
// (ipFamilies, appProtocol, targetRef, hints, ...) are ignored silently;
// unknown fields are ignored with a warning; values nftproxy cannot honour
// (protocol HTTP, addressType FQDN, an unknown type or policy) are errors.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "manifest/yaml_text.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::manifest {

// True for (apiVersion, kind) pairs translated here.
bool IsKubernetesObject(const std::string& api_version, const std::string& kind);

struct K8sTranslation {
  std::vector<nftproxy::v1::Resource> resources;
  // One line each, e.g. "line 7, column 3: spec.fooBar: unknown field, ignored".
  std::vector<std::string> warnings;
  // Where a translated Service's (dropped) spec.selector was written; null
  // when it has none.
  YAML::Mark selector = YAML::Mark::null_mark();
};

// Translates one document (a mapping whose apiVersion/kind passed
// IsKubernetesObject). Errors are InvalidArgument, one line:
// "line L, column C: spec.ports[0].protocol: ...". Does not throw.
absl::StatusOr<K8sTranslation> TranslateKubernetes(const YamlNode& doc);
absl::StatusOr<K8sTranslation> TranslateKubernetes(const YAML::Node& doc);

}  // namespace nftproxy::manifest
