// nftproxy's own schema is read two ways (manifest_json.h): directly through
// reflection where a document is plain and valid, else as JSON through
// protobuf's parser. These tests hold the two to the same result over values
// of every kind, odd ones included, and check that the common ones take the
// direct way (which is what makes large manifests fast).
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "manifest/manifest_json.h"
#include "manifest/resource_message.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

struct Outcome {
  bool direct = false;
  absl::StatusOr<v1::Resource> result;
};

// Reads `body` (a document without `kind`) as `kind` both ways, expects the
// same outcome, and tells whether the direct way took it.
Outcome BothWays(const char* kind, const std::string& body) {
  const KindInfo* info = KindByManifest(kind);
  EXPECT_NE(info, nullptr);
  const YamlNode doc = FromYamlCpp(YAML::Load(std::string("kind: ") + kind + "\n" + body));
  Outcome out;
  out.result = manifest_json_internal::ConvertViaJson(doc, *info);
  v1::Resource direct;
  out.direct = manifest_json_internal::FillDirectly(doc, *info, &direct);
  if (out.direct) {
    EXPECT_TRUE(out.result.ok()) << body << "\nthe direct way took it; the JSON way says: " << out.result.status();
    if (out.result.ok()) {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(direct, *out.result))
          << body << "\ndirect: " << direct.ShortDebugString() << "\njson:   " << out.result->ShortDebugString();
    }
  }
  // And the entry point gives the JSON way's result, error text included.
  absl::StatusOr<v1::Resource> entry = ConvertOwnDocument(doc, *info);
  EXPECT_EQ(entry.status(), out.result.status()) << body;
  if (entry.ok() && out.result.ok()) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*entry, *out.result)) << body;
  }
  return out;
}

TEST(ManifestDirect, CommonDocumentsTakeTheDirectWay) {
  const std::vector<std::pair<const char*, std::string>> docs = {
      {"Service",
       "apiVersion: nftproxy.io/v1\nmetadata: {namespace: ns-0, name: svc-0, labels: {app: svc-0}}\n"
       "spec:\n  type: CLUSTER_IP\n  clusterIps: [10.96.0.0]\n"
       "  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"},
      {"Service",
       "metadata: {name: web, resourceVersion: \"12\", createTime: 2024-01-02T03:04:05Z}\n"
       "spec:\n  type: NodePort\n  externalTrafficPolicy: Local\n  sessionAffinity: ClientIP\n"
       "  sessionAffinityTimeout: 10m\n  selector: {app: web}\n  loadBalancing: RoundRobin\n"
       "  ports:\n  - {name: http, protocol: tcp, port: 80, targetPort: http, nodePort: 30080}\n"
       "  healthCheckNodePort: 32000\n  externalIps: [198.19.0.1]\n"},
      {"EndpointSlice",
       "metadata: {namespace: ns-0, name: svc-0-abcde}\nserviceName: svc-0\n"
       "ports: [{name: http, protocol: TCP, port: 8080}]\n"
       "endpoints:\n- addresses: [10.128.0.0]\n  nodeName: node-0\n  conditions: {ready: true, serving: false}\n"
       "  weight: 3\n  zone: z\n  hostname: h\n"},
      {"Workload", "metadata: {name: pod-a}\naddresses: [10.1.0.5]\nports: [{port: 8080}]\nweight: 7\n"},
  };
  for (const auto& [kind, body] : docs) {
    Outcome o = BothWays(kind, body);
    EXPECT_TRUE(o.result.ok()) << body << "\n" << o.result.status();
    EXPECT_TRUE(o.direct) << body;
  }
}

TEST(ManifestDirect, ValuesOfEveryKindReadAlike) {
  const std::vector<std::string> specs = {
      // Enums: names, kubectl spellings, numbers, nonsense.
      "  type: NODE_PORT\n", "  type: nodeport\n", "  type: Node-Port\n", "  type: 2\n", "  type: \"3\"\n",
      "  type: 9\n", "  type: TYPE_UNSPECIFIED\n", "  type: unspecified\n", "  type: \"\"\n", "  type: null\n",
      "  type: [a]\n", "  ports: [{protocol: 2}]\n", "  ports: [{protocol: +1}]\n",
      // Whole numbers.
      "  ports: [{port: 0x50}]\n", "  ports: [{port: 0o17}]\n", "  ports: [{port: 080}]\n",
      "  ports: [{port: \"80\"}]\n", "  ports: [{port: +80}]\n", "  ports: [{port: -0}]\n",
      "  ports: [{port: -1}]\n", "  ports: [{port: 4294967295}]\n", "  ports: [{port: 4294967296}]\n",
      "  ports: [{port: 1.0}]\n", "  ports: [{port: 1e2}]\n", "  ports: [{port: null}]\n",
      "  ports: [{port: true}]\n", "  ports: [{port: {a: 1}}]\n", "  healthCheckNodePort: 0xFFFFFFFF\n",
      // targetPort and its name.
      "  ports: [{targetPort: http}]\n", "  ports: [{targetPort: \"8080\"}]\n", "  ports: [{targetPort: 0x10}]\n",
      "  ports: [{targetPort: 1.5}]\n", "  ports: [{targetPort: 80, targetPortName: x}]\n",
      "  ports: [{targetPort: x, targetPortName: y}]\n", "  ports: [{targetPort: [1]}]\n",
      "  ports: [{targetPort: null}]\n", "  ports: [{target_port: http}]\n", "  ports: [{targetPort: .inf}]\n",
      // Durations.
      "  sessionAffinityTimeout: 600\n", "  sessionAffinityTimeout: 1.5s\n", "  sessionAffinityTimeout: -1.5\n",
      "  sessionAffinityTimeout: -0.5s\n", "  sessionAffinityTimeout: 0.000000001\n",
      "  sessionAffinityTimeout: 1e3\n", "  sessionAffinityTimeout: \"90\"\n", "  sessionAffinityTimeout: 1h30m\n",
      "  sessionAffinityTimeout: 500000000000\n", "  sessionAffinityTimeout: 87600000h\n",
      "  sessionAffinityTimeout: 0\n", "  sessionAffinityTimeout: soon\n", "  sessionAffinityTimeout: null\n",
      "  sessionAffinityTimeout: {seconds: 5}\n", "  sessionAffinityTimeout: [5]\n",
      "  sessionAffinityTimeout: 0x10\n", "  sessionAffinityTimeout: .inf\n",
      // Strings, repeated and in maps.
      "  clusterIps: 198.19.0.1\n", "  clusterIps: [null]\n", "  clusterIps: [1]\n", "  clusterIps: [\"1\"]\n",
      "  clusterIps: [[a]]\n", "  clusterIps: null\n", "  clusterIps: []\n", "  clusterIps: {}\n",
      "  clusterIps: [a]\n  cluster_ips: [b]\n", "  externalName: \"caf\\u00e9\"\n",
      "  externalName: \"a\\tb\\nc\\x01\"\n", "  externalName: \"nul\\0x\"\n", "  externalName: yes\n",
      "  externalName: 'null'\n", "  externalName: ~\n", "  externalName: .nan\n", "  externalName: 1_000\n",
      "  externalName: \"\\\\ \\\"\"\n", "  selector: {app: 2}\n", "  selector: {app: null}\n",
      "  selector: {~: a}\n", "  selector: {\"\": a, ~: b}\n", "  selector: {\"\": a}\n", "  selector: {a: [b]}\n",
      "  selector: {1: a}\n", "  selector: {\"k\\u00e9\": v}\n", "  selector: null\n", "  selector: {}\n",
      "  selector: [a]\n", "  selector: {a: b, a: c}\n",
      // Structure.
      "  ports: null\n", "  ports: [null]\n", "  ports: [1]\n", "  ports: {a: 1}\n", "  ports: [{}]\n",
      "  ports: [{prot: 1}]\n", "  bogus: 1\n", "  ports: [{port: 1, port: 2}]\n",
  };
  for (const std::string& spec : specs) {
    BothWays("Service", "metadata: {name: web}\nspec:\n" + spec);
  }
  const std::vector<std::string> bodies = {
      "spec: null\n", "spec: {}\n", "spec: []\n", "spec: 1\n", "metadata: null\n", "metadata: {}\n",
      "metadata: {resourceVersion: 18446744073709551615}\n", "metadata: {resourceVersion: 18446744073709551616}\n",
      "metadata: {resourceVersion: \"0x10\"}\n", "metadata: {resource_version: 1, resourceVersion: 2}\n",
      "metadata: {createTime: \"2024-01-02T03:04:05.123+01:00\"}\n", "metadata: {createTime: 0001-01-01T00:00:00Z}\n",
      "metadata: {createTime: 9999-12-31T23:59:59.999999999Z}\n", "metadata: {createTime: 2024-13-02T03:04:05Z}\n",
      "metadata: {createTime: bad}\n", "metadata: {createTime: 5}\n", "metadata: {createTime: \"5\"}\n",
      "metadata: {createTime: null}\n", "metadata: {createTime: {seconds: 1}}\n",
      "metadata: {createTime: 2024-01-02t03:04:05z}\n", "metadata: {createTime: 2024-01-02 03:04:05Z}\n",
      "apiVersion: nftproxy.io/v1\napiVersion: x\n", "kind: Service\n", "? [a]\n: b\n", "~: 1\n",
      "metadata: {name: web}\nmetadata: {name: web}\n",
  };
  for (const std::string& body : bodies) BothWays("Service", body);
  const std::vector<std::string> conditions = {
      "ready: true",  "ready: True", "ready: TRUE",  "ready: false", "ready: FALSE", "ready: yes",
      "ready: \"true\"", "ready: 1", "ready: 0",    "ready: null",  "ready: [true]", "ready: {a: 1}",
  };
  for (const std::string& c : conditions) {
    BothWays("EndpointSlice", "endpoints: [{conditions: {" + c + "}, weight: 0}]\n");
    BothWays("Workload", "conditions: {" + c + "}\nweight: null\n");
  }
}

}  // namespace
}  // namespace nftproxy::manifest
