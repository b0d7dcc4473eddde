// Kubernetes manifests (as `kubectl get -o yaml` exports them) translated to
// nftproxy resources: manifest/k8s_manifest.cc, through ParseManifests.
#include "manifest/k8s_manifest.h"

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "manifest/manifest.h"

namespace nftproxy::manifest {
namespace {

using nftproxy::v1::Resource;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct Parsed {
  std::vector<ManifestDoc> docs;
  std::vector<std::string> warnings;
};

Parsed MustParse(const std::string& text) {
  Parsed p;
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, "k8s.yaml", &p.warnings);
  EXPECT_TRUE(docs.ok()) << docs.status();
  if (docs.ok()) p.docs = *std::move(docs);
  return p;
}

std::string MustFail(const std::string& text) {
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, "k8s.yaml");
  EXPECT_FALSE(docs.ok());
  if (docs.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  return std::string(docs.status().message());
}

void ExpectProto(const Resource& got, const std::string& want_text) {
  Resource want;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(want_text, &want)) << want_text;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, want))
      << "got:  " << got.ShortDebugString() << "\nwant: " << want.ShortDebugString();
}

// The shape of `kubectl get service web -n shop -o yaml` on a 1.29 cluster.
constexpr char kExportedService[] = R"(apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web","namespace":"shop"}}
  creationTimestamp: "2024-05-02T09:14:07Z"
  labels:
    app.kubernetes.io/name: web
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:ports: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2024-05-02T09:14:07Z"
  name: web
  namespace: shop
  resourceVersion: "48213"
  uid: 9b7d6c1e-2f0a-4c3b-8f5e-0d1c2b3a4f5e
spec:
  clusterIP: 10.96.41.7
  clusterIPs:
  - 10.96.41.7
  - fd00:10:96::41:7
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  - IPv6
  ipFamilyPolicy: PreferDualStack
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: http
  - appProtocol: grpc
    name: grpc
    port: 9090
    protocol: TCP
    targetPort: 9090
  - name: dns
    port: 53
    protocol: UDP
    targetPort: 5353
  selector:
    app.kubernetes.io/name: web
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
)";

TEST(K8sManifest, ExportedClusterIpService) {
  Parsed p = MustParse(kExportedService);
  // The selector is dropped with a warning, since no slices come with the
  // Service (issue 12); with them, nothing is said (ClusterExportAsAList).
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_TRUE(Contains(p.warnings[0], "k8s.yaml: document 1 (Kubernetes Service shop/web): line 48, column 5: "
                                      "spec.selector: not used, and no EndpointSlices"))
      << p.warnings[0];
  ASSERT_EQ(p.docs.size(), 1u);
  EXPECT_EQ(p.docs[0].origin, "v1 Service");
  // The selector is the control plane's; the EndpointSlices carry endpoints.
  ExpectProto(p.docs[0].resource, R"pb(service {
    metadata { namespace: "shop" name: "web" labels { key: "app.kubernetes.io/name" value: "web" } }
    spec {
      type: CLUSTER_IP
      cluster_ips: "10.96.41.7" cluster_ips: "fd00:10:96::41:7"
      ports { name: "http" protocol: TCP port: 80 target_port_name: "http" }
      ports { name: "grpc" protocol: TCP port: 9090 target_port: 9090 }
      ports { name: "dns" protocol: UDP port: 53 target_port: 5353 }
      internal_traffic_policy: CLUSTER
      session_affinity: NONE
    } })pb");
}

TEST(K8sManifest, LoadBalancerNodePortAndPolicies) {
  Parsed p = MustParse(R"(apiVersion: v1
kind: Service
metadata: {name: lb, namespace: edge}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalIPs: [192.0.2.10]
  loadBalancerSourceRanges: [198.51.100.0/24]
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP: {timeoutSeconds: 600}
  loadBalancerIP: 203.0.113.9
  allocateLoadBalancerNodePorts: true
  ports:
  - {port: 443, targetPort: 8443, nodePort: 31443}
status:
  loadBalancer:
    ingress:
    - ip: 203.0.113.9
      ipMode: VIP
    - ip: 203.0.113.10
      ipMode: Proxy
    - hostname: lb.example.com
)");
  ASSERT_EQ(p.docs.size(), 1u);
  ExpectProto(p.docs[0].resource, R"pb(service {
    metadata { namespace: "edge" name: "lb" }
    spec {
      type: LOAD_BALANCER
      cluster_ips: "10.96.0.50"
      external_ips: "192.0.2.10"
      load_balancer_source_ranges: "198.51.100.0/24"
      external_traffic_policy: LOCAL
      health_check_node_port: 32100
      session_affinity: CLIENT_IP
      session_affinity_timeout { seconds: 600 }
      ports { protocol: TCP port: 443 target_port: 8443 node_port: 31443 }
      load_balancer_ips: "203.0.113.9"
    } })pb");
  ASSERT_EQ(p.warnings.size(), 3u);
  EXPECT_EQ(p.warnings[0],
            "k8s.yaml: document 1 (Kubernetes Service edge/lb): line 14, column 19: spec.loadBalancerIP: ignored: the "
            "load-balancer address is taken from status.loadBalancer.ingress");
  EXPECT_TRUE(Contains(p.warnings[1], "status.loadBalancer.ingress[1]: ipMode Proxy: not programmed")) << p.warnings[1];
  EXPECT_TRUE(Contains(p.warnings[2], "status.loadBalancer.ingress[2].hostname: ignored")) << p.warnings[2];
}

TEST(K8sManifest, OldTrafficPolicySpellingAndExternalName) {
  Parsed p = MustParse(R"(apiVersion: v1
kind: Service
metadata: {name: old}
spec: {type: NodePort, clusterIP: 10.96.0.9, externalTrafficPolicy: OnlyLocal, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: db.example.com}
)");
  ASSERT_EQ(p.docs.size(), 2u);
  EXPECT_EQ(p.docs[0].resource.service().spec().external_traffic_policy(), v1::ServiceSpec::LOCAL);
  EXPECT_EQ(p.docs[0].resource.service().spec().type(), v1::ServiceSpec::NODE_PORT);
  ExpectProto(p.docs[1].resource, R"pb(service {
    metadata { name: "ext" } spec { type: EXTERNAL_NAME external_name: "db.example.com" } })pb");
}

TEST(K8sManifest, HeadlessServiceHasNoClusterIp) {
  Parsed p = MustParse("apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n"
                       "  ports: [{name: pg, port: 5432}]\n");
  ASSERT_EQ(p.docs.size(), 1u);
  EXPECT_TRUE(p.warnings.empty());
  const v1::ServiceSpec& spec = p.docs[0].resource.service().spec();
  EXPECT_TRUE(spec.cluster_ips().empty());
  ASSERT_EQ(spec.ports_size(), 1);
  EXPECT_EQ(spec.ports(0).name(), "pg");
}

TEST(K8sManifest, UnknownFieldsWarnUnsupportedValuesFail) {
  Parsed p = MustParse("apiVersion: v1\nkind: Service\nmetadata: {name: web, flavour: x}\n"
                       "spec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, colour: red}]\n  topologyKeys: [a]\n");
  ASSERT_EQ(p.docs.size(), 1u);
  ASSERT_EQ(p.warnings.size(), 3u);
  EXPECT_TRUE(Contains(p.warnings[0], "line 3, column 23: metadata.flavour: unknown field, ignored")) << p.warnings[0];
  EXPECT_TRUE(Contains(p.warnings[1], "spec.ports[0].colour: unknown field, ignored")) << p.warnings[1];
  EXPECT_TRUE(Contains(p.warnings[2], "spec.topologyKeys: unknown field, ignored")) << p.warnings[2];

  std::string msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n"
                             "  clusterIP: 10.96.0.1\n  ports:\n  - port: 80\n    protocol: HTTP\n");
  EXPECT_EQ(msg, "k8s.yaml: document 1 (Kubernetes Service shop/web): line 8, column 15: spec.ports[0].protocol: "
                 "protocol \"HTTP\" is not supported (TCP, UDP or SCTP)");
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, type: Magic}\n");
  EXPECT_TRUE(Contains(msg, "spec.type: \"Magic\" is not supported (expected ClusterIP, NodePort, LoadBalancer, ExternalName)"))
      << msg;
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, "
                 "sessionAffinity: Cookie}\n");
  EXPECT_TRUE(Contains(msg, "spec.sessionAffinity: \"Cookie\" is not supported")) << msg;
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n");
  EXPECT_TRUE(Contains(msg, "spec.clusterIP: required: nftproxy does not allocate cluster IPs")) << msg;
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, ports: [{name: x}]}\n");
  EXPECT_TRUE(Contains(msg, "spec.ports[0].port: required")) << msg;
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 99999}]}\n");
  EXPECT_TRUE(Contains(msg, "spec.ports[0].port: expected a whole number from 0 to 65535")) << msg;
  msg = MustFail("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1, ports: 80}\n");
  EXPECT_TRUE(Contains(msg, "spec.ports: expected a list")) << msg;
}

// `kubectl get endpointslices -n shop -o yaml` item shape.
constexpr char kExportedSlice[] = R"(apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2024-05-02T09:14:09Z"
  generateName: web-
  generation: 3
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: web
  name: web-7xk2p
  namespace: shop
  ownerReferences:
  - apiVersion: v1
    blockOwnerDeletion: true
    controller: true
    kind: Service
    name: web
    uid: 9b7d6c1e-2f0a-4c3b-8f5e-0d1c2b3a4f5e
  resourceVersion: "48240"
  uid: 0c4a2e6f-1b3d-4f5a-9c8e-7d6b5a4c3b2a
addressType: IPv4
endpoints:
- addresses:
  - 10.244.1.17
  conditions:
    ready: true
    serving: true
    terminating: false
  nodeName: node-a
  targetRef:
    kind: Pod
    name: web-5d8f7c9b6-x2x7k
    namespace: shop
    uid: 11111111-2222-3333-4444-555555555555
  zone: zone-1
- addresses:
  - 10.244.2.9
  conditions:
    ready: false
    serving: true
    terminating: true
  hints:
    forZones:
    - name: zone-2
  hostname: web-1
  nodeName: node-b
ports:
- appProtocol: http
  name: http
  port: 8080
  protocol: TCP
- name: dns
  port: 5353
  protocol: UDP
)";

TEST(K8sManifest, ExportedEndpointSlice) {
  Parsed p = MustParse(kExportedSlice);
  EXPECT_TRUE(p.warnings.empty()) << p.warnings[0];
  ASSERT_EQ(p.docs.size(), 1u);
  EXPECT_EQ(p.docs[0].origin, "discovery.k8s.io/v1 EndpointSlice");
  ExpectProto(p.docs[0].resource, R"pb(endpoint_slice {
    metadata { namespace: "shop" name: "web-7xk2p"
      labels { key: "endpointslice.kubernetes.io/managed-by" value: "endpointslice-controller.k8s.io" }
      labels { key: "kubernetes.io/service-name" value: "web" } }
    service_name: "web"
    ports { name: "http" protocol: TCP port: 8080 }
    ports { name: "dns" protocol: UDP port: 5353 }
    endpoints { addresses: "10.244.1.17" conditions { ready: true serving: true terminating: false }
                node_name: "node-a" zone: "zone-1" }
    endpoints { addresses: "10.244.2.9" conditions { ready: false serving: true terminating: true }
                node_name: "node-b" hostname: "web-1" } })pb");
}

TEST(K8sManifest, EndpointSliceErrors) {
  std::string msg = MustFail("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\n"
                             "addressType: IPv4\nendpoints: []\n");
  EXPECT_TRUE(Contains(msg, "metadata.labels[kubernetes.io/service-name]: required")) << msg;
  msg = MustFail("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: "
                 "{kubernetes.io/service-name: x}}\naddressType: FQDN\n");
  EXPECT_TRUE(Contains(msg, "line 4, column 14: addressType: \"FQDN\" is not supported (IPv4 or IPv6)")) << msg;
  msg = MustFail("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: "
                 "{kubernetes.io/service-name: x}}\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: maybe}}]\n");
  EXPECT_TRUE(Contains(msg, "endpoints[0].conditions.ready: expected true or false")) << msg;
}

TEST(K8sManifest, EndpointsBecomeSlices) {
  Parsed p = MustParse(R"(apiVersion: v1
kind: Endpoints
metadata:
  name: legacy
  namespace: shop
  creationTimestamp: "2024-05-02T09:14:07Z"
subsets:
- addresses:
  - ip: 10.244.1.5
    nodeName: node-a
    targetRef: {kind: Pod, name: legacy-1}
  notReadyAddresses:
  - ip: 10.244.1.6
  ports:
  - name: http
    port: 8080
    protocol: TCP
- addresses:
  - ip: 10.244.3.1
    hostname: h1
  ports:
  - name: http
    port: 9090
)");
  EXPECT_TRUE(p.warnings.empty());
  ASSERT_EQ(p.docs.size(), 2u);
  EXPECT_EQ(p.docs[0].origin, "v1 Endpoints");
  ExpectProto(p.docs[0].resource, R"pb(endpoint_slice {
    metadata { namespace: "shop" name: "legacy" }
    service_name: "legacy"
    ports { name: "http" protocol: TCP port: 8080 }
    endpoints { addresses: "10.244.1.5" node_name: "node-a" }
    endpoints { addresses: "10.244.1.6" conditions { ready: false } } })pb");
  ExpectProto(p.docs[1].resource, R"pb(endpoint_slice {
    metadata { namespace: "shop" name: "legacy-2" }
    service_name: "legacy"
    ports { name: "http" protocol: TCP port: 9090 }
    endpoints { addresses: "10.244.3.1" hostname: "h1" } })pb");
  std::string msg = MustFail("apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\nsubsets: [{addresses: [{hostname: x}]}]\n");
  EXPECT_TRUE(Contains(msg, "subsets[0].addresses[0].ip: required")) << msg;
}

TEST(K8sManifest, ClusterExportAsAList) {
  // `kubectl get svc,endpoints,endpointslices -n shop -o yaml`: the Endpoints
  // duplicate the slices and are left out.
  std::string list = "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n";
  auto indent = [](const std::string& doc) {
    std::string out;
    bool first = true;
    size_t start = 0;
    while (start < doc.size()) {
      size_t end = doc.find('\n', start);
      if (end == std::string::npos) end = doc.size();
      out += (first ? "- " : "  ") + doc.substr(start, end - start) + "\n";
      first = false;
      start = end + 1;
    }
    return out;
  };
  list += indent(kExportedService);
  list += indent("apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\n"
                 "subsets: [{addresses: [{ip: 10.244.1.17}], ports: [{name: http, port: 8080}]}]");
  list += indent(kExportedSlice);
  Parsed p = MustParse(list);
  ASSERT_EQ(p.docs.size(), 2u);
  EXPECT_EQ(DescribeResource(p.docs[0].resource), "service shop/web");
  EXPECT_EQ(DescribeResource(p.docs[1].resource), "endpointslice shop/web-7xk2p");
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_TRUE(Contains(p.warnings[0], "(Kubernetes Endpoints shop/web): left out: EndpointSlices for the same service"))
      << p.warnings[0];

  // What the API server itself returns for a list call.
  Parsed api = MustParse("apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nmetadata: {resourceVersion: '1'}\n"
                         "items:\n- metadata: {name: s, labels: {kubernetes.io/service-name: x}}\n"
                         "  apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  addressType: IPv4\n");
  ASSERT_EQ(api.docs.size(), 1u);
  EXPECT_EQ(api.docs[0].resource.endpoint_slice().service_name(), "x");

  // An error inside a List names the item.
  std::string msg = MustFail("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n"
                             "  metadata: {name: a}\n  spec: {clusterIP: 10.96.0.1, ports: [{port: 80, protocol: ICMP}]}\n");
  EXPECT_EQ(msg.find("k8s.yaml: document 1, items[0] (Kubernetes Service default/a): line 7, column"), 0u) << msg;
}

TEST(K8sManifest, TranslateDirectly) {
  EXPECT_TRUE(IsKubernetesObject("v1", "Service"));
  EXPECT_TRUE(IsKubernetesObject("v1", "Endpoints"));
  EXPECT_TRUE(IsKubernetesObject("discovery.k8s.io/v1", "EndpointSlice"));
  EXPECT_FALSE(IsKubernetesObject("v1", "EndpointSlice"));
  EXPECT_FALSE(IsKubernetesObject("apps/v1", "Deployment"));
  absl::StatusOr<K8sTranslation> t = TranslateKubernetes(YAML::Load("kind: Service\nmetadata: {name: x}\nspec: 3\n"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(std::string(t.status().message()), "line 3, column 7: spec: expected a mapping");
  t = TranslateKubernetes(YAML::Load("- 1"));
  EXPECT_FALSE(t.ok());
}

}  // namespace
}  // namespace nftproxy::manifest
