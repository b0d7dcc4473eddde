#include "manifest/manifest.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"

namespace nftproxy::manifest {
namespace {

using nftproxy::v1::Protocol;
using nftproxy::v1::Resource;
using nftproxy::v1::ServiceSpec;

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

#define EXPECT_CONTAINS(haystack, needle)                              \
  EXPECT_TRUE(Contains((haystack), (needle)))                          \
      << "expected to find: " << (needle) << "\n             in: " \
      << (haystack)

// Parses text and expects success.
std::vector<ManifestDoc> MustParse(std::string_view text,
                                   const std::string& file = "test.yaml") {
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, file);
  EXPECT_TRUE(docs.ok()) << docs.status();
  if (!docs.ok()) return {};
  return *std::move(docs);
}

// Parses text and expects an InvalidArgument error; returns its message.
std::string MustFail(std::string_view text,
                     const std::string& file = "web.yaml") {
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, file);
  EXPECT_FALSE(docs.ok());
  if (docs.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  return std::string(docs.status().message());
}

Resource FromText(const std::string& text) {
  Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

void ExpectProtoEq(const Resource& got, const Resource& want) {
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, want))
      << "got:  " << got.ShortDebugString()
      << "\nwant: " << want.ShortDebugString();
}

constexpr char kTwoDocs[] = R"(# A service and its endpoints.
kind: Service
apiVersion: nftproxy.io/v1
metadata:
  namespace: default
  name: web
  labels: {app: web, tier: "1"}
spec:
  type: CLUSTER_IP
  clusterIps: ["198.19.0.10"]
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 8080
    - name: dns
      protocol: UDP
      port: 53
  sessionAffinity: CLIENT_IP
  sessionAffinityTimeout: 600s
---
kind: EndpointSlice
metadata:
  name: web-1
serviceName: web
ports:
  - {name: http, protocol: TCP, port: 8080}
endpoints:
  - addresses: [10.0.0.1]
    conditions: {ready: false}
    weight: 3
    nodeName: node-a
  - addresses: ["10.0.0.2", "fd00::2"]
    weight: 0
)";

TEST(ParseManifestsTest, TwoDocumentsRoundTrip) {
  std::vector<ManifestDoc> docs = MustParse(kTwoDocs, "web.yaml");
  ASSERT_EQ(docs.size(), 2u);

  EXPECT_EQ(docs[0].file, "web.yaml");
  EXPECT_EQ(docs[0].index, 1);
  ASSERT_TRUE(docs[0].resource.has_service());
  const nftproxy::v1::Service& svc = docs[0].resource.service();
  EXPECT_EQ(svc.metadata().namespace_(), "default");
  EXPECT_EQ(svc.metadata().name(), "web");
  EXPECT_EQ(svc.metadata().labels().at("app"), "web");
  EXPECT_EQ(svc.metadata().labels().at("tier"), "1");
  EXPECT_EQ(svc.spec().type(), ServiceSpec::CLUSTER_IP);
  ASSERT_EQ(svc.spec().cluster_ips_size(), 1);
  EXPECT_EQ(svc.spec().cluster_ips(0), "198.19.0.10");
  ASSERT_EQ(svc.spec().ports_size(), 2);
  EXPECT_EQ(svc.spec().ports(0).name(), "http");
  EXPECT_EQ(svc.spec().ports(0).protocol(), Protocol::TCP);
  EXPECT_EQ(svc.spec().ports(0).port(), 80u);
  EXPECT_EQ(svc.spec().ports(0).target_case(),
            nftproxy::v1::ServicePort::kTargetPort);
  EXPECT_EQ(svc.spec().ports(0).target_port(), 8080u);
  EXPECT_EQ(svc.spec().ports(1).protocol(), Protocol::UDP);
  EXPECT_EQ(svc.spec().ports(1).port(), 53u);
  EXPECT_EQ(svc.spec().ports(1).target_case(),
            nftproxy::v1::ServicePort::TARGET_NOT_SET);
  EXPECT_EQ(svc.spec().session_affinity(), ServiceSpec::CLIENT_IP);
  EXPECT_EQ(svc.spec().session_affinity_timeout().seconds(), 600);

  EXPECT_EQ(docs[1].file, "web.yaml");
  EXPECT_EQ(docs[1].index, 2);
  ASSERT_TRUE(docs[1].resource.has_endpoint_slice());
  const nftproxy::v1::EndpointSlice& slice = docs[1].resource.endpoint_slice();
  EXPECT_EQ(slice.metadata().namespace_(), "");  // left for the server
  EXPECT_EQ(slice.metadata().name(), "web-1");
  EXPECT_EQ(slice.service_name(), "web");
  ASSERT_EQ(slice.ports_size(), 1);
  EXPECT_EQ(slice.ports(0).port(), 8080u);
  ASSERT_EQ(slice.endpoints_size(), 2);
  const nftproxy::v1::Endpoint& e0 = slice.endpoints(0);
  ASSERT_EQ(e0.addresses_size(), 1);
  EXPECT_EQ(e0.addresses(0), "10.0.0.1");
  ASSERT_TRUE(e0.conditions().has_ready());
  EXPECT_FALSE(e0.conditions().ready());
  EXPECT_FALSE(e0.conditions().has_serving());
  ASSERT_TRUE(e0.has_weight());
  EXPECT_EQ(e0.weight(), 3u);
  EXPECT_EQ(e0.node_name(), "node-a");
  const nftproxy::v1::Endpoint& e1 = slice.endpoints(1);
  EXPECT_EQ(e1.addresses_size(), 2);
  EXPECT_FALSE(e1.has_conditions());
  ASSERT_TRUE(e1.has_weight());  // explicit 0 = drain, distinct from unset
  EXPECT_EQ(e1.weight(), 0u);

  ExpectProtoEq(docs[1].resource, FromText(R"pb(
    endpoint_slice {
      metadata { name: "web-1" }
      service_name: "web"
      ports { name: "http" protocol: TCP port: 8080 }
      endpoints {
        addresses: "10.0.0.1"
        conditions { ready: false }
        weight: 3
        node_name: "node-a"
      }
      endpoints { addresses: "10.0.0.2" addresses: "fd00::2" weight: 0 }
    })pb"));
}

TEST(ParseManifestsTest, QuotedAndUnquotedNumbers) {
  std::vector<ManifestDoc> docs = MustParse(R"(
kind: Service
metadata: {name: a}
spec:
  ports:
    - {port: 80, targetPort: 8080, nodePort: 30080}
    - {port: "81", targetPort: "8081", nodePort: '30081'}
    - {port: +82, targetPort: 0x1F90}
  healthCheckNodePort: "32000"
---
kind: Workload
metadata: {name: pod-a, labels: {version: "2"}}
addresses: [10.1.0.5]
ports: [{name: http, port: "8080"}]
weight: "7"
conditions: {ready: true, terminating: false}
)");
  ASSERT_EQ(docs.size(), 2u);
  const ServiceSpec& spec = docs[0].resource.service().spec();
  ASSERT_EQ(spec.ports_size(), 3);
  EXPECT_EQ(spec.ports(0).port(), 80u);
  EXPECT_EQ(spec.ports(0).target_port(), 8080u);
  EXPECT_EQ(spec.ports(0).node_port(), 30080u);
  EXPECT_EQ(spec.ports(1).port(), 81u);
  // A quoted number is still a number, not a port name.
  EXPECT_EQ(spec.ports(1).target_case(), nftproxy::v1::ServicePort::kTargetPort);
  EXPECT_EQ(spec.ports(1).target_port(), 8081u);
  EXPECT_EQ(spec.ports(1).node_port(), 30081u);
  EXPECT_EQ(spec.ports(2).port(), 82u);
  EXPECT_EQ(spec.ports(2).target_port(), 8080u);
  EXPECT_EQ(spec.health_check_node_port(), 32000u);

  ASSERT_TRUE(docs[1].resource.has_workload());
  const nftproxy::v1::Workload& w = docs[1].resource.workload();
  EXPECT_EQ(w.metadata().labels().at("version"), "2");
  EXPECT_EQ(w.addresses(0), "10.1.0.5");
  EXPECT_EQ(w.ports(0).port(), 8080u);
  EXPECT_EQ(w.weight(), 7u);
  EXPECT_TRUE(w.conditions().ready());
  EXPECT_TRUE(w.conditions().has_terminating());
  EXPECT_FALSE(w.conditions().terminating());
}

TEST(ParseManifestsTest, UnquotedNumberForStringFieldIsAnError) {
  // As in Kubernetes: `version: 2` is a number, and labels are strings.
  std::string msg = MustFail(R"(
kind: Workload
metadata: {name: pod-a, labels: {version: 2}}
)");
  EXPECT_CONTAINS(msg, "web.yaml: document 1 (Workload): ");
  EXPECT_CONTAINS(msg, "labels");
}

TEST(ParseManifestsTest, TargetPortNameConversion) {
  std::vector<ManifestDoc> docs = MustParse(R"(
kind: Service
metadata: {name: web}
spec:
  ports:
    - {name: http, port: 80, targetPort: http}
    - {name: metrics, port: 9090, targetPort: "metrics"}
    - {name: admin, port: 9091, targetPortName: admin}
    - {name: plain, port: 9092, targetPort: 9093}
)");
  ASSERT_EQ(docs.size(), 1u);
  const ServiceSpec& spec = docs[0].resource.service().spec();
  ASSERT_EQ(spec.ports_size(), 4);
  EXPECT_EQ(spec.ports(0).target_case(),
            nftproxy::v1::ServicePort::kTargetPortName);
  EXPECT_EQ(spec.ports(0).target_port_name(), "http");
  EXPECT_EQ(spec.ports(1).target_port_name(), "metrics");
  EXPECT_EQ(spec.ports(2).target_port_name(), "admin");
  EXPECT_EQ(spec.ports(3).target_case(), nftproxy::v1::ServicePort::kTargetPort);
  EXPECT_EQ(spec.ports(3).target_port(), 9093u);
}

TEST(ParseManifestsTest, TargetPortNameOnlyInServicePorts) {
  // EndpointPort has no targetPort; the conversion must not invent one.
  std::string msg = MustFail(R"(
kind: EndpointSlice
metadata: {name: web-1}
ports: [{name: http, port: 80, targetPort: http}]
)");
  EXPECT_CONTAINS(msg, "web.yaml: document 1 (EndpointSlice): ");
  EXPECT_CONTAINS(msg, "targetPort");
}

TEST(ParseManifestsTest, JsonInput) {
  std::vector<ManifestDoc> docs = MustParse(R"({
	"kind": "Service",
	"apiVersion": "nftproxy.io/v1",
	"metadata": {"namespace": "prod", "name": "api"},
	"spec": {
		"type": "NODE_PORT",
		"clusterIps": ["198.19.0.11", "fd00:198:19::11"],
		"ports": [{"name": "https", "protocol": "TCP", "port": 443,
		           "targetPort": "https", "nodePort": 30443}],
		"selector": {"app": "api", "note": "a \"quoted\"\tvalue \u00e9"},
		"externalTrafficPolicy": "LOCAL"
	}
}
)", "api.json");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].file, "api.json");
  EXPECT_EQ(docs[0].index, 1);
  ExpectProtoEq(docs[0].resource, FromText(R"pb(
    service {
      metadata { namespace: "prod" name: "api" }
      spec {
        type: NODE_PORT
        cluster_ips: "198.19.0.11"
        cluster_ips: "fd00:198:19::11"
        ports {
          name: "https"
          protocol: TCP
          port: 443
          target_port_name: "https"
          node_port: 30443
        }
        selector { key: "app" value: "api" }
        selector { key: "note" value: "a \"quoted\"\tvalue \303\251" }
        external_traffic_policy: LOCAL
      }
    })pb"));
}

TEST(ParseManifestsTest, EmptyDocumentsAreSkippedButCounted) {
  std::vector<ManifestDoc> docs = MustParse(R"(---
# only a comment
---
kind: Workload
metadata: {name: pod-a}
---
---
kind: Workload
metadata: {name: pod-b}
...
)");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].resource.workload().metadata().name(), "pod-a");
  EXPECT_EQ(docs[1].resource.workload().metadata().name(), "pod-b");
  EXPECT_LT(docs[0].index, docs[1].index);
  EXPECT_GT(docs[1].index, 2);

  EXPECT_TRUE(MustParse("").empty());
  EXPECT_TRUE(MustParse("# nothing\n").empty());
}

TEST(ParseManifestsTest, YamlSyntaxErrorReportsLineAndColumn) {
  std::string msg = MustFail(R"(kind: Workload
metadata: {name: pod-a}
---
kind: Service
metadata:
  name: web
    namespace: default
)");
  EXPECT_EQ(msg.find("web.yaml: document 2: line 7, column "), 0u) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;

  msg = MustFail("kind: Service\nspec: {ports: [80\n");
  EXPECT_EQ(msg.find("web.yaml: document 1: line "), 0u) << msg;
  EXPECT_CONTAINS(msg, "column");
}

TEST(ParseManifestsTest, UnknownFieldIsNamed) {
  std::string msg = MustFail(R"(
kind: Service
metadata: {name: web}
spec:
  ports:
    - {name: http, prot: 80}
)");
  EXPECT_EQ(msg.find("web.yaml: document 1 (Service): "), 0u) << msg;
  EXPECT_CONTAINS(msg, "prot");
  EXPECT_CONTAINS(msg, "spec.ports[0]");

  msg = MustFail("kind: Workload\nmetadata: {name: a}\nnodename: x\n");
  EXPECT_EQ(msg.find("web.yaml: document 1 (Workload): "), 0u) << msg;
  EXPECT_CONTAINS(msg, "nodename");
}

TEST(ParseManifestsTest, BadEnumValueIsNamed) {
  // (`tcp` is accepted since issue 12: kubectl's spellings of enum values.)
  std::string msg = MustFail(
      "kind: Service\nmetadata: {name: web}\nspec: {ports: [{protocol: tcpx, "
      "port: 80}]}\n");
  EXPECT_EQ(msg.find("web.yaml: document 1 (Service): "), 0u) << msg;
  EXPECT_CONTAINS(msg, "protocol");
}

TEST(ParseManifestsTest, UnknownOrMissingKind) {
  std::string msg = MustFail(R"(kind: Workload
metadata: {name: pod-a}
---
kind: Servce
metadata: {name: web}
)");
  EXPECT_EQ(msg,
            "web.yaml: document 2: unknown kind \"Servce\" (expected Service, "
            "EndpointSlice or Workload)");

  msg = MustFail("metadata: {name: web}\n");
  EXPECT_EQ(msg.find("web.yaml: document 1: "), 0u) << msg;
  EXPECT_CONTAINS(msg, "kind");

  // Case-sensitive.
  msg = MustFail("kind: service\nmetadata: {name: web}\n");
  EXPECT_CONTAINS(msg, "unknown kind \"service\"");
}

TEST(ParseManifestsTest, ApiVersion) {
  MustParse("apiVersion: nftproxy.io/v1\nkind: Workload\n");
  // apiVersion v1 is Kubernetes' Service (see k8s_manifest_test.cc).
  std::string msg = MustFail("apiVersion: v1\nkind: Service\n");
  EXPECT_EQ(msg, "web.yaml: document 1 (Kubernetes Service): metadata: required (with a name)");
  msg = MustFail("apiVersion: v2\nkind: Service\n");
  EXPECT_EQ(msg.find("web.yaml: document 1 (Service): unsupported apiVersion \"v2\""), 0u) << msg;
  msg = MustFail("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n");
  EXPECT_EQ(msg.find("web.yaml: document 1: kind \"Deployment\" (apiVersion \"apps/v1\") is not supported"), 0u)
      << msg;
  msg = MustFail("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\n");
  EXPECT_CONTAINS(msg, "use discovery.k8s.io/v1");
}

TEST(ParseManifestsTest, UnknownFieldSuggestsTheRightName) {
  // kubectl habits: clusterIP instead of clusterIps; wrong case.
  std::string msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 198.19.0.1\n");
  EXPECT_EQ(msg,
            "web.yaml: document 1 (Service): line 4, column 3: spec.clusterIP: unknown field (ServiceSpec has no "
            "field \"clusterIP\"; did you mean \"clusterIps\"?)");
  msg = MustFail("kind: EndpointSlice\nmetadata: {name: s}\nserviceName: web\nendpoints:\n  - adresses: [10.0.0.1]\n");
  EXPECT_CONTAINS(msg, "line 5, column 5: endpoints[0].adresses: unknown field");
  EXPECT_CONTAINS(msg, "did you mean \"addresses\"?");
  // Nothing close: no suggestion.
  msg = MustFail("kind: Workload\nmetadata: {name: a}\ncompletelyDifferent: 1\n");
  EXPECT_FALSE(Contains(msg, "did you mean")) << msg;
  // Map keys (labels, selector) are data, not field names; proto names work too.
  MustParse("kind: Service\nmetadata: {name: web, labels: {anyThing: x}}\nspec:\n  selector: {clusterIP: y}\n"
            "  cluster_ips: [198.19.0.1]\n  sessionAffinityTimeout: 10s\n");
}

TEST(ParseManifestsTest, ListOfOwnResources) {
  // What `nftproxy get services -o json` prints for several resources.
  std::vector<ManifestDoc> docs = MustParse(R"({"kind": "List", "items": [
    {"kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIps": ["198.19.0.1"]}},
    {"kind": "Workload", "metadata": {"name": "w"}}]})");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(DescribeResource(docs[0].resource), "service default/a");
  EXPECT_EQ(DescribeResource(docs[1].resource), "workload default/w");
  EXPECT_EQ(docs[1].index, 1);
  std::string msg = MustFail("kind: List\nitems:\n  - kind: Workload\n    metadata: {name: w}\n  - kind: Bogus\n");
  EXPECT_EQ(msg.find("web.yaml: document 1, items[1]: unknown kind \"Bogus\""), 0u) << msg;
  msg = MustFail("kind: List\nitems:\n  - kind: List\n    items: []\n");
  EXPECT_CONTAINS(msg, "items[0]");
}

TEST(ParseManifestsTest, NotAMapping) {
  std::string msg = MustFail("- kind: Service\n");
  EXPECT_EQ(msg.find("web.yaml: document 1: "), 0u) << msg;
  EXPECT_CONTAINS(msg, "mapping");

  msg = MustFail("kind: Workload\n---\njust a string\n");
  EXPECT_EQ(msg.find("web.yaml: document 2: "), 0u) << msg;
}

TEST(ParseManifestsTest, DuplicateKey) {
  std::string msg = MustFail(
      "kind: Service\nmetadata: {name: web}\nspec:\n  ports:\n"
      "    - port: 80\n      port: 81\n");
  EXPECT_EQ(msg.find("web.yaml: document 1 (Service): "), 0u) << msg;
  EXPECT_CONTAINS(msg, "duplicate key \"port\"");
  EXPECT_CONTAINS(msg, "spec.ports[0]");
}

TEST(ParseManifestsTest, OneLinePerBadDocument) {
  std::string msg = MustFail(R"(kind: Nope
---
kind: Workload
metadata: {name: ok}
---
kind: Workload
bogus: 1
)");
  EXPECT_EQ(msg.find("web.yaml: document 1: unknown kind"), 0u) << msg;
  EXPECT_CONTAINS(msg, "\nweb.yaml: document 3 (Workload): ");
  EXPECT_FALSE(Contains(msg, "document 2")) << msg;
}

TEST(ParseManifestsTest, StringsNeedingEscapes) {
  std::vector<ManifestDoc> docs = MustParse(
      "kind: Workload\nmetadata:\n  name: pod\n  labels:\n"
      "    a: 'back\\slash \"q\"'\n    b: \"tab\\there\\nnewline\"\n"
      "    c: yes\n    d: 1.5e3x\n    e: 'null'\n");
  ASSERT_EQ(docs.size(), 1u);
  const auto& labels = docs[0].resource.workload().metadata().labels();
  EXPECT_EQ(labels.at("a"), "back\\slash \"q\"");
  EXPECT_EQ(labels.at("b"), "tab\there\nnewline");
  EXPECT_EQ(labels.at("c"), "yes");
  EXPECT_EQ(labels.at("d"), "1.5e3x");
  EXPECT_EQ(labels.at("e"), "null");
}

TEST(DescribeResourceTest, Names) {
  EXPECT_EQ(DescribeResource(FromText(
                R"pb(service { metadata { namespace: "default" name: "web" } })pb")),
            "service default/web");
  EXPECT_EQ(DescribeResource(FromText(
                R"pb(endpoint_slice { metadata { namespace: "default" name: "web-1" } })pb")),
            "endpointslice default/web-1");
  EXPECT_EQ(DescribeResource(
                FromText(R"pb(workload { metadata { name: "pod-a" } })pb")),
            "workload default/pod-a");
  EXPECT_EQ(DescribeResource(
                FromText(R"pb(service { metadata { namespace: "prod" name: "api" } })pb")),
            "service prod/api");
  EXPECT_EQ(DescribeResource(FromText(R"pb(workload { metadata { namespace: "x" } })pb")), "workload x/(unnamed)");
  EXPECT_EQ(DescribeResource(Resource()), "empty resource");
}

}  // namespace
}  // namespace nftproxy::manifest
