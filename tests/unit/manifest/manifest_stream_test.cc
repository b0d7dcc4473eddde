// ForEachManifest: streaming, the fast YAML reader against yaml-cpp, and the
// cross-document checks (duplicates, shadowed Endpoints, dropped selectors).
#include <unistd.h>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "manifest/manifest.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

using ::testing::HasSubstr;

// The events of a reader, as text (marks included: they make error lines).
class Trace : public YAML::EventHandler {
 public:
  std::string text;
  void OnDocumentStart(const YAML::Mark&) override { text += "DOC "; }
  void OnDocumentEnd() override { text += "END\n"; }
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { text += "~" + At(m); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { text += "*"; }
  void OnScalar(const YAML::Mark& m, const std::string& tag, YAML::anchor_t, const std::string& v) override {
    text += tag + "<" + v + ">" + At(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    text += "[" + At(m);
  }
  void OnSequenceEnd() override { text += "] "; }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    text += "{" + At(m);
  }
  void OnMapEnd() override { text += "} "; }

 private:
  static std::string At(const YAML::Mark& m) { return "@" + std::to_string(m.line) + ":" + std::to_string(m.column) + " "; }
};

// Whether the fast reader took every document, and its events with marks
// made relative to each document (as yaml-cpp, reading them alone, gives).
std::string ViaFastReader(const std::string& text, bool* all_fast) {
  Trace t;
  *all_fast = true;
  ForEachYamlDocument(text, [&](const YamlDocumentText& doc) {
    if (!FastReadYamlDocument(doc, &t)) *all_fast = false;
    return true;
  });
  return t.text;
}

std::string ViaYamlCpp(const std::string& text) {
  Trace t;
  std::istringstream in(text);
  YAML::Parser parser(in);
  while (parser.HandleNextDocument(t)) {
  }
  return t.text;
}

TEST(FastYamlReader, ReadsLikeYamlCpp) {
  const std::vector<std::string> inputs = {
      "kind: Service\nmetadata:\n  name: web # the name\n  labels: {app: web, \"q\": 'it''s'}\nspec:\n"
      "  ports:\n  - name: http\n    port: 80\n  -   port: 81\n\n    # comment\n    name: x\n  clusterIps: [a, b]\n",
      "items:\n- a\n- b: 1\n  c: [1, {d: e}]\nkind: List\n",
      "---\na: 1\n---\n# only a comment\n---\nb: \"tab\\there \\u00e9 \\x41\"\n...\n",
      "{\n \"kind\": \"List\",\n \"items\": [\n  {\"a\": [1, 2.5, true, null, \"x\"]},\n  {}\n ]\n}\n",
      "a: |\n  line 1\n\n   indented\n  line 3\nb: >-\n  folded\n  text\n\n  para\nc: |+\n  keep\n\nd: ~\ne:\nf: \"\"\n",
      "a:\n  - - nested\n",  // left to yaml-cpp
      "a: &x 1\nb: *x\n",     // left to yaml-cpp
      "key: value: bad\n",    // left to yaml-cpp (its error)
      "a: http://x:80/p\nb: -1\nc: 'x' # c\nd: [a: b]\n",
      "- x\n-\n  - y\n- {a: 1}\n",
      "a:\r\n  b: c\r\n",
      // Found by tests/fuzz/manifest_fuzz: where the fast reader read
      // otherwise than yaml-cpp, or took what yaml-cpp refuses.
      std::string("\x0b\x00\xff\xff", 4),     // controls, NUL, not UTF-8
      "a: [1, \r.nan]\n",                      // a CR alone
      "a: b\nc: ",                              // empty values at the end: their marks
      "a: b\nc:\n",
      "- a\n-\n- b\n",
      "- a\n- ",
      "-\r\n",
      "[a?, b]\n",                               // '?' in a flow scalar
      "{a: b?}\n",
      "note: |\n    line 1",                    // a block scalar's last line without its break
      "x: {a\n: b}\n",                          // an implicit key over two lines
      "{:}\n",                                  // no key before ':'
      "{s:[]}\n",
      "a: 1\n\t\nb: 2\n",                       // a tab starting a blank line
      "folded: >-\n    \n  next: x\n",          // spaces-only line longer than the indentation
  };
  for (const std::string& in : inputs) {
    bool fast = false;
    std::string want;
    try {
      want = ViaYamlCpp(in);
    } catch (const YAML::Exception&) {
      ViaFastReader(in, &fast);
      EXPECT_FALSE(fast) << "the fast reader took what yaml-cpp refuses: " << in;
      continue;
    }
    const std::string got = ViaFastReader(in, &fast);
    if (fast) EXPECT_EQ(got, want) << in;
  }
  bool fast = false;
  ViaFastReader("kind: List\nitems:\n- {a: 1}\n- b: [x]\n  c: |\n    t\n", &fast);
  EXPECT_TRUE(fast);
}

std::vector<ManifestDoc> MustStream(const std::string& text, std::vector<std::string>* warnings,
                                    const ManifestOptions& options = {}) {
  std::vector<ManifestDoc> docs;
  absl::Status s = ForEachManifestInText(
      text, "in.yaml",
      [&](ManifestDoc d) {
        docs.push_back(std::move(d));
        return absl::OkStatus();
      },
      warnings, options);
  EXPECT_TRUE(s.ok()) << s;
  return docs;
}

TEST(ForEachManifest, StreamsInOrderWithEndpointsLast) {
  std::vector<std::string> warnings;
  std::vector<ManifestDoc> docs = MustStream(
      "apiVersion: v1\nkind: Endpoints\nmetadata: {name: old}\nsubsets: [{addresses: [{ip: 10.0.0.1}]}]\n---\n"
      "kind: Service\nmetadata: {name: web}\n---\n"
      "apiVersion: v1\nitems:\n- {kind: Workload, metadata: {name: w1}}\n- {kind: Workload, metadata: {name: w2}}\n"
      "kind: List\n",
      &warnings, ManifestOptions{"prod"});
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(DescribeResource(docs[0].resource), "service prod/web");
  EXPECT_EQ(DocumentPlace(docs[0]), "in.yaml: document 2");
  EXPECT_EQ(DescribeResource(docs[2].resource), "workload prod/w2");
  EXPECT_EQ(DocumentPlace(docs[2]), "in.yaml: document 3, items[1]");
  EXPECT_EQ(docs[3].origin, "v1 Endpoints");
  EXPECT_EQ(DescribeResource(docs[3].resource), "endpointslice prod/old");
  EXPECT_TRUE(warnings.empty());
  // LoadManifests and ParseManifests keep the input's order.
  absl::StatusOr<std::vector<ManifestDoc>> parsed = ParseManifests(
      "apiVersion: v1\nkind: Endpoints\nmetadata: {name: old}\n---\nkind: Service\nmetadata: {name: web}\n", "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)[0].origin, "v1 Endpoints");
}

TEST(ForEachManifest, DuplicateNamesBothPlaces) {
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(
      "kind: Service\nmetadata: {name: web}\n---\nkind: Workload\nmetadata: {name: w}\n---\n"
      "kind: List\nitems:\n- {kind: Service, metadata: {name: web, namespace: default}}\n",
      "web.yaml");
  ASSERT_FALSE(docs.ok());
  EXPECT_EQ(docs.status().message(),
            "web.yaml: document 3, items[0]: service default/web is given twice: also in web.yaml: document 1 "
            "(a resource may appear once in an input)");
}

TEST(ForEachManifest, ListItemsAreNamedInWarnings) {
  std::vector<std::string> warnings;
  std::vector<ManifestDoc> docs = MustStream(
      "apiVersion: v1\nkind: List\nitems:\n"
      "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  addressType: IPv4\n"
      "  metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n"
      "- apiVersion: v1\n  kind: Endpoints\n  metadata: {name: web}\n"
      "- apiVersion: v1\n  kind: Service\n  metadata: {name: lone}\n"
      "  spec: {clusterIP: 10.96.0.1, selector: {app: lone}, ports: [{port: 80}]}\n"
      "- apiVersion: v1\n  kind: Service\n  metadata: {name: web}\n"
      "  spec: {clusterIP: 10.96.0.2, selector: {app: web}, ports: [{port: 80}]}\n",
      &warnings);
  ASSERT_EQ(docs.size(), 3u);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0],
            "in.yaml: document 1, items[1] (Kubernetes Endpoints default/web): left out: EndpointSlices for the "
            "same service are given too, and a proxy uses those");
  // Only the service without slices.
  EXPECT_THAT(warnings[1], HasSubstr("in.yaml: document 1, items[2] (Kubernetes Service default/lone): line 14, "
                                     "column 42: spec.selector: not used"));
  EXPECT_THAT(warnings[1], HasSubstr("apply them along with the Service"));
}

TEST(ForEachManifest, SinkErrorStopsReading) {
  int calls = 0;
  absl::Status s = ForEachManifestInText("kind: Workload\nmetadata: {name: a}\n---\nkind: Workload\nmetadata: {name: b}\n",
                                         "x.yaml", [&](ManifestDoc) {
                                           ++calls;
                                           return absl::ResourceExhaustedError("full");
                                         });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
}

TEST(ForEachManifest, ItemsOnlyInALists) {
  absl::StatusOr<std::vector<ManifestDoc>> docs =
      ParseManifests("items:\n- {kind: Workload, metadata: {name: a}}\nkind: Workload\n", "x.yaml");
  ASSERT_FALSE(docs.ok());
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr("x.yaml: document 1: line 1, column 1: items: only a List"));
}

TEST(ForEachManifest, ExplicitDefaultEnumIsKeptAsWritten) {
  // RANDOM is value 1, not the zero value: a written `loadBalancing: RANDOM`
  // is a different message from leaving it out (the server compares bytes).
  absl::StatusOr<std::vector<ManifestDoc>> a = ParseManifests("kind: Service\nmetadata: {name: a}\n", "a");
  absl::StatusOr<std::vector<ManifestDoc>> b =
      ParseManifests("kind: Service\nmetadata: {name: a}\nspec: {loadBalancing: RANDOM}\n", "b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)[0].resource.SerializeAsString(), (*b)[0].resource.SerializeAsString());
}

}  // namespace
}  // namespace nftproxy::manifest
