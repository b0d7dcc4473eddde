// Enum and duration values in nftproxy's own schema: kubectl's spellings are
// accepted where unambiguous, anything else is refused with its place and the
// valid values (issue 12, item 4); empty inputs are errors (item 5).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "manifest/manifest.h"
#include "tests/unit/client/temp_dir.h"

namespace nftproxy::manifest {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using v1::ServiceSpec;

v1::Service MustParseService(const std::string& spec) {
  absl::StatusOr<std::vector<ManifestDoc>> docs =
      ParseManifests("kind: Service\nmetadata: {name: web}\nspec:\n" + spec, "web.yaml");
  EXPECT_TRUE(docs.ok()) << docs.status();
  if (!docs.ok() || docs->size() != 1) return {};
  return (*docs)[0].resource.service();
}

std::string MustFail(const std::string& text) {
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, "web.yaml");
  EXPECT_FALSE(docs.ok());
  if (docs.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  return std::string(docs.status().message());
}

TEST(ManifestValues, KubectlSpellingsOfEnums) {
  v1::Service s = MustParseService(
      "  type: NodePort\n  clusterIps: [198.19.0.1]\n"
      "  ports:\n  - {port: 80, protocol: tcp}\n  - {port: 53, protocol: udp}\n  - {port: 9, protocol: sctp}\n"
      "  - {port: 10, protocol: TCP}\n"
      "  externalTrafficPolicy: Local\n  internalTrafficPolicy: Cluster\n"
      "  sessionAffinity: ClientIP\n  loadBalancing: RoundRobin\n");
  EXPECT_EQ(s.spec().type(), ServiceSpec::NODE_PORT);
  ASSERT_EQ(s.spec().ports_size(), 4);
  EXPECT_EQ(s.spec().ports(0).protocol(), v1::TCP);
  EXPECT_EQ(s.spec().ports(1).protocol(), v1::UDP);
  EXPECT_EQ(s.spec().ports(2).protocol(), v1::SCTP);
  EXPECT_EQ(s.spec().ports(3).protocol(), v1::TCP);
  EXPECT_EQ(s.spec().external_traffic_policy(), ServiceSpec::LOCAL);
  EXPECT_EQ(s.spec().internal_traffic_policy(), ServiceSpec::CLUSTER);
  EXPECT_EQ(s.spec().session_affinity(), ServiceSpec::CLIENT_IP);
  EXPECT_EQ(s.spec().load_balancing(), ServiceSpec::ROUND_ROBIN);

  EXPECT_EQ(MustParseService("  type: ClusterIP\n").spec().type(), ServiceSpec::CLUSTER_IP);
  EXPECT_EQ(MustParseService("  type: LoadBalancer\n").spec().type(), ServiceSpec::LOAD_BALANCER);
  EXPECT_EQ(MustParseService("  type: ExternalName\n").spec().type(), ServiceSpec::EXTERNAL_NAME);
  EXPECT_EQ(MustParseService("  sessionAffinity: None\n").spec().session_affinity(), ServiceSpec::NONE);
  EXPECT_EQ(MustParseService("  loadBalancing: SourceHash\n").spec().load_balancing(), ServiceSpec::SOURCE_HASH);
  EXPECT_EQ(MustParseService("  loadBalancing: Random\n").spec().load_balancing(), ServiceSpec::RANDOM);
  // The API's own names still work, in YAML and JSON.
  EXPECT_EQ(MustParseService("  type: NODE_PORT\n").spec().type(), ServiceSpec::NODE_PORT);
  absl::StatusOr<std::vector<ManifestDoc>> json = ParseManifests(
      R"({"kind": "EndpointSlice", "metadata": {"name": "s"}, "ports": [{"port": 80, "protocol": "udp"}]})", "s.json");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ((*json)[0].resource.endpoint_slice().ports(0).protocol(), v1::UDP);
}

TEST(ManifestValues, Durations) {
  EXPECT_EQ(MustParseService("  sessionAffinityTimeout: 600\n").spec().session_affinity_timeout().seconds(), 600);
  EXPECT_EQ(MustParseService("  sessionAffinityTimeout: 600s\n").spec().session_affinity_timeout().seconds(), 600);
  EXPECT_EQ(MustParseService("  sessionAffinityTimeout: 10m\n").spec().session_affinity_timeout().seconds(), 600);
  EXPECT_EQ(MustParseService("  sessionAffinityTimeout: 1h30m\n").spec().session_affinity_timeout().seconds(), 5400);
  EXPECT_EQ(MustParseService("  sessionAffinityTimeout: \"90\"\n").spec().session_affinity_timeout().seconds(), 90);
  const v1::Service half = MustParseService("  sessionAffinityTimeout: 1.5s\n");
  EXPECT_EQ(half.spec().session_affinity_timeout().seconds(), 1);
  EXPECT_EQ(half.spec().session_affinity_timeout().nanos(), 500000000);

  std::string msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  sessionAffinityTimeout: soon\n");
  EXPECT_EQ(msg,
            "web.yaml: document 1 (Service): line 4, column 27: spec.sessionAffinityTimeout: \"soon\" is not a "
            "duration; valid: a number of seconds (600) or a number with a unit (600s, 10m, 1h30m)");
}

TEST(ManifestValues, BadEnumNamesPlaceAndValidValues) {
  std::string msg = MustFail(
      "kind: Workload\nmetadata: {name: a}\n---\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePorts\n");
  EXPECT_EQ(msg,
            "web.yaml: document 2 (Service): line 7, column 9: spec.type: \"NodePorts\" is not a service type; "
            "valid: ClusterIP, NodePort, LoadBalancer, ExternalName");
  msg = MustFail("kind: Service\nmetadata: {name: web}\nspec: {ports: [{protocol: icmp, port: 80}]}\n");
  EXPECT_EQ(msg,
            "web.yaml: document 1 (Service): line 3, column 27: spec.ports[0].protocol: \"icmp\" is not a protocol; "
            "valid: TCP, UDP, SCTP");
  msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  externalTrafficPolicy: Nearest\n");
  EXPECT_THAT(msg, HasSubstr("line 4, column 26: spec.externalTrafficPolicy: \"Nearest\" is not a traffic policy; "
                             "valid: Cluster, Local"));
  msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  sessionAffinity: Cookie\n");
  EXPECT_THAT(msg, HasSubstr("spec.sessionAffinity: \"Cookie\" is not a session affinity; valid: None, ClientIP"));
  msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  loadBalancing: leastconn\n");
  EXPECT_THAT(msg, HasSubstr("spec.loadBalancing: \"leastconn\" is not a load-balancing mode; valid: Random, "
                             "RoundRobin, SourceHash"));
  // Not raw protobuf text.
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("type.googleapis.com")));
}

TEST(ManifestValues, BadNumbersAndStringsNamePlace) {
  std::string msg = MustFail("kind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: eighty\n");
  EXPECT_EQ(msg, "web.yaml: document 1 (Service): line 5, column 11: spec.ports[0].port: \"eighty\" is not a whole "
                 "number from 0 to 4294967295");
  msg = MustFail("kind: Workload\nmetadata: {name: pod-a, labels: {version: 2}}\n");
  EXPECT_EQ(msg, "web.yaml: document 1 (Workload): line 2, column 43: metadata.labels.version: 2 is not a string; "
                 "quote it (\"2\")");
}

using client::test_support::TempDir;

TEST(ManifestEmptyInput, IsAnErrorNamingThePath) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (const std::string& text : {std::string(""), std::string("# nothing here\n"), std::string("---\n---\n"),
                                  std::string("\n\n...\n")}) {
    const std::string file = dir.Write("empty.yaml", text);
    absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(file);
    ASSERT_FALSE(docs.ok()) << "input: " << text;
    EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
    EXPECT_EQ(docs.status().message(), file + ": no objects (the input holds no resources)");
  }
  // A directory whose manifests are all empty.
  TempDir empty_files;
  empty_files.Write("a.yaml", "");
  empty_files.Write("b.yml", "# later\n");
  absl::StatusOr<std::vector<ManifestDoc>> docs = LoadManifests(empty_files.path());
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  EXPECT_EQ(docs.status().message(), empty_files.path() + ": no objects (the input holds no resources)");
  // An empty directory.
  TempDir nothing;
  docs = LoadManifests(nothing.path());
  ASSERT_FALSE(docs.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << docs.status();
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr(nothing.path() + ": no manifests"));
}

}  // namespace
}  // namespace nftproxy::manifest
