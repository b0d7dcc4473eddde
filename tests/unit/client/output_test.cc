// The CLI's pieces that need no server: tables, manifests out (and
// back in), diffs, the per-service view of the ruleset.
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "client/output.h"
#include "manifest/manifest.h"

namespace nftproxy::client {
namespace {

using manifest::ManifestDoc;
using manifest::ParseManifests;

v1::Resource FromText(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

TEST(Output, TableIsAlignedLikeKubectl) {
  EXPECT_EQ(FormatTable({{"NAME", "TYPE", "AGE"}, {"web-frontend", "ClusterIP", "5m"}, {"db", "NodePort", "12d"}}),
            "NAME           TYPE        AGE\n"
            "web-frontend   ClusterIP   5m\n"
            "db             NodePort    12d\n");
}

TEST(Output, Age) {
  EXPECT_EQ(Age(absl::Seconds(42)), "42s");
  EXPECT_EQ(Age(absl::Seconds(192)), "3m12s");
  EXPECT_EQ(Age(absl::Minutes(42)), "42m");
  EXPECT_EQ(Age(absl::Hours(5) + absl::Minutes(4)), "5h4m");
  EXPECT_EQ(Age(absl::Hours(30)), "30h");
  EXPECT_EQ(Age(absl::Hours(24 * 12)), "12d");
  EXPECT_EQ(Age(absl::Seconds(-5)), "0s");
}

TEST(Output, ServiceRows) {
  v1::Resource r = FromText(R"pb(service {
    metadata { namespace: "shop" name: "web" source: "adapter" create_time { seconds: 1000 } }
    spec { type: NODE_PORT cluster_ips: "198.19.0.1" external_ips: "192.0.2.1"
           ports { name: "http" port: 80 target_port: 8080 node_port: 30080 } ports { port: 53 protocol: UDP } } })pb");
  const absl::Time now = absl::FromUnixSeconds(1000 + 300);
  EXPECT_EQ(TableRow(r, false, now),
            (std::vector<std::string>{"shop", "web", "NodePort", "198.19.0.1", "192.0.2.1", "80:30080/TCP,53/UDP", "5m"}));
  EXPECT_EQ(TableRow(r, true, now),
            (std::vector<std::string>{"shop", "web", "NodePort", "198.19.0.1", "192.0.2.1", "80:30080->8080/TCP,53/UDP",
                                      "5m", "RANDOM", "<none>", "adapter"}));
  EXPECT_EQ(TableHeader(v1::SERVICE, false).size(), TableRow(r, false, now).size());
  EXPECT_EQ(TableHeader(v1::SERVICE, true).size(), TableRow(r, true, now).size());
  v1::Resource s = FromText(R"pb(endpoint_slice { metadata { name: "web-1" } service_name: "web"
    ports { name: "http" port: 8080 }
    endpoints { addresses: "10.0.0.1" } endpoints { addresses: "10.0.0.2" conditions { ready: false } weight: 3 } })pb");
  EXPECT_EQ(TableRow(s, false, now)[3], "10.0.0.1,10.0.0.2(not ready)");
  EXPECT_EQ(TableRow(s, true, now)[3], "10.0.0.1,10.0.0.2(not ready)*3");
  EXPECT_EQ(TableHeader(v1::ENDPOINT_SLICE, true).size(), TableRow(s, true, now).size());
  v1::Resource w = FromText(R"pb(workload { metadata { name: "w" } addresses: "10.0.0.9" })pb");
  EXPECT_EQ(TableHeader(v1::WORKLOAD, true).size(), TableRow(w, true, now).size());
}

TEST(Output, YamlAndJsonReadBackUnchanged) {
  // Label values that look like numbers or booleans must stay strings.
  std::vector<v1::Resource> rs = {
      FromText(R"pb(service { metadata { namespace: "default" name: "web" resource_version: 7
                      labels { key: "tier" value: "1" } labels { key: "on" value: "true" } labels { key: "e" value: "" } }
                      spec { cluster_ips: "198.19.0.10" ports { name: "http" port: 80 target_port_name: "http" }
                             session_affinity_timeout { seconds: 30 } selector { key: "v" value: "0x10" } } })pb"),
      FromText(R"pb(endpoint_slice { metadata { name: "web-1" } service_name: "web"
                      endpoints { addresses: "10.0.0.1" conditions { ready: false } weight: 0 } })pb"),
      FromText(R"pb(workload { metadata { name: "w" } })pb")};
  for (const std::string& text : {ResourcesYaml(rs), ResourcesJson(rs), ResourceYaml(rs[0]), ResourceJson(rs[0])}) {
    absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, "out");
    ASSERT_TRUE(docs.ok()) << docs.status() << "\n" << text;
    ASSERT_GE(docs->size(), 1u);
    for (size_t i = 0; i < docs->size(); ++i) {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals((*docs)[i].resource, rs[i]))
          << (*docs)[i].resource.ShortDebugString() << "\n" << text;
    }
  }
  EXPECT_EQ(ResourceYaml(rs[2]), "kind: Workload\nmetadata:\n  name: w\n");
}

TEST(Output, EqualMessagesPrintEqual) {
  // Maps print with sorted keys, whatever order they were filled in.
  v1::Resource a = FromText(R"pb(workload { metadata { name: "w" } })pb");
  v1::Resource b = a;
  for (int i = 0; i < 50; ++i) (*a.mutable_workload()->mutable_metadata()->mutable_labels())["k" + std::to_string(i)] = "v";
  for (int i = 49; i >= 0; --i) (*b.mutable_workload()->mutable_metadata()->mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_EQ(ResourceYaml(a), ResourceYaml(b));
  const std::string y = ResourceYaml(a);
  EXPECT_LT(y.find("k0: v"), y.find("k1: v"));
  EXPECT_LT(y.find("k1: v"), y.find("k10: v"));
}

TEST(Output, JsonIsIndentedByTwoSpaces) {
  v1::Resource r = FromText(R"pb(service { metadata { name: "web" } spec { ports { port: 80 } } })pb");
  EXPECT_EQ(ResourceJson(r),
            "{\n"
            "  \"kind\": \"Service\",\n"
            "  \"metadata\": {\n"
            "    \"name\": \"web\"\n"
            "  },\n"
            "  \"spec\": {\n"
            "    \"ports\": [\n"
            "      {\n"
            "        \"port\": 80\n"
            "      }\n"
            "    ]\n"
            "  }\n"
            "}\n");
  EXPECT_EQ(ResourcesJson({}), "{\n  \"kind\": \"List\",\n  \"items\": []\n}\n");
  const std::string list = ResourcesJson({r});
  EXPECT_TRUE(absl::StartsWith(list, "{\n  \"kind\": \"List\",\n  \"items\": [\n    {\n      \"kind\": \"Service\",\n"))
      << list;
  EXPECT_TRUE(absl::EndsWith(list, "\n    }\n  ]\n}\n")) << list;
  // a value with a newline (escaped in JSON) keeps its line
  v1::Resource n = FromText(R"pb(workload { metadata { name: "w" labels { key: "k" value: "a\n  b" } } })pb");
  EXPECT_NE(ResourceJson(n).find("      \"k\": \"a\\n  b\"\n"), std::string::npos) << ResourceJson(n);
}

TEST(Output, ExternalNameHasNoLoadBalancing) {
  v1::Resource r = FromText(R"pb(service { metadata { name: "db" }
    spec { type: EXTERNAL_NAME external_name: "db.example.com" load_balancing: ROUND_ROBIN } })pb");
  const std::vector<std::string> row = TableRow(r, true, absl::Now());
  EXPECT_EQ(row[2], "ExternalName");
  EXPECT_EQ(row[3], "<none>");
  EXPECT_EQ(row[4], "db.example.com");
  EXPECT_EQ(row[7], "<none>");
  EXPECT_EQ(LoadBalancingName(r.service().spec()), "<none>");
  v1::Resource plain = FromText(R"pb(service { metadata { name: "web" } })pb");
  EXPECT_EQ(LoadBalancingName(plain.service().spec()), "RANDOM");
}

TEST(Output, WithoutServerFields) {
  v1::Resource r = FromText(R"pb(service { metadata { name: "web" resource_version: 4 source: "a"
    create_time { seconds: 5 } update_time { seconds: 6 } } })pb");
  EXPECT_EQ(WithoutServerFields(r).ShortDebugString(),
            R"(service { metadata { namespace: "default" name: "web" source: "a" } })");
}

TEST(Output, UnifiedDiff) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb\n", "x", "y"), "");
  EXPECT_EQ(UnifiedDiff("", "a\nb\n", "/dev/null", "new"), "--- /dev/null\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  const std::string a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n";
  const std::string b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\nseventeen\n";
  EXPECT_EQ(UnifiedDiff(a, b, "live", "file"),
            "--- live\n+++ file\n"
            "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
            "@@ -14,3 +14,4 @@\n 14\n 15\n 16\n+seventeen\n");
}

TEST(Output, RulesetForOneService) {
  const std::string text =
      "table inet nftproxy {\n"
      "\tmap service-ips4 {\n"
      "\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
      "\t\telements = { 198.19.0.10 . tcp . 80 : goto svc4/default/web/tcp/80,\n"
      "\t\t\t     198.19.0.11 . tcp . 80 : goto svc4/default/web2/tcp/80,\n"
      "\t\t\t     198.19.0.12 . udp . 53 : goto svc4/default/web/udp/53 }\n"
      "\t}\n"
      "\n"
      "\tchain services {\n"
      "\t\tip daddr . meta l4proto . th dport vmap @service-ips4\n"
      "\t}\n"
      "\n"
      "\tchain svc4/default/web/tcp/80 {\n"
      "\t\tmeta l4proto tcp dnat ip to 198.18.10.2:8080\n"
      "\t}\n"
      "\n"
      "\tchain svc4/default/web2/tcp/80 {\n"
      "\t\tmeta l4proto tcp dnat ip to 198.18.11.2:8080\n"
      "\t}\n"
      "\n"
      "\tchain svc4/default/web/udp/53 {\n"
      "\t\tmeta l4proto udp dnat ip to 198.18.10.2:5353\n"
      "\t}\n"
      "}\n";
  EXPECT_EQ(RulesetFor(text, "default", "web"),
            "\tmap service-ips4:\n"
            "\t\t198.19.0.10 . tcp . 80 : goto svc4/default/web/tcp/80\n"
            "\t\t198.19.0.12 . udp . 53 : goto svc4/default/web/udp/53\n"
            "\tchain svc4/default/web/tcp/80 {\n"
            "\t\tmeta l4proto tcp dnat ip to 198.18.10.2:8080\n"
            "\t}\n"
            "\tchain svc4/default/web/udp/53 {\n"
            "\t\tmeta l4proto udp dnat ip to 198.18.10.2:5353\n"
            "\t}\n");
  EXPECT_EQ(RulesetFor(text, "other", "web"), "");
}

TEST(Output, RulesetForFollowsMarksIntoSharedBackendMaps) {
  // A service chain picks a mark in [offset, offset + mod) and jumps to a
  // shared chain that maps marks to backends.
  const std::string text =
      "table inet nftproxy {\n"
      "\tmap backends4-0 {\n"
      "\t\ttype mark : ipv4_addr . inet_service\n"
      "\t\tflags interval\n"
      "\t\telements = { 0x80000000/21 : 198.18.10.2 . 8080,\n"
      "\t\t\t     0x80000800/21 : 198.18.11.2 . 8080,\n"
      "\t\t\t     0x80001000/21 : 198.18.12.2 . 5353 }\n"
      "\t}\n"
      "\tchain pick4-0 {\n"
      "\t\tmeta l4proto tcp dnat ip to meta mark map @backends4-0\n"
      "\t}\n"
      "\tchain svc4/default/web/tcp/80 {\n"
      "\t\tct mark set meta mark meta mark set numgen random mod 4096 offset 2147483648 goto pick4-0\n"
      "\t}\n"
      "}\n";
  EXPECT_EQ(RulesetFor(text, "default", "web"),
            "\tchain svc4/default/web/tcp/80 {\n"
            "\t\tct mark set meta mark meta mark set numgen random mod 4096 offset 2147483648 goto pick4-0\n"
            "\t}\n"
            "\tmap backends4-0 (svc4/default/web/tcp/80):\n"
            "\t\t0x80000000/21 : 198.18.10.2 . 8080\n"
            "\t\t0x80000800/21 : 198.18.11.2 . 8080\n");
}

}  // namespace
}  // namespace nftproxy::client
