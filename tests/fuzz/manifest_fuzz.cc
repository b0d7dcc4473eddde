// libFuzzer target: the manifest readers (manifest/manifest*.h,
// manifest/k8s_manifest.h, manifest/yaml_text.h) on arbitrary text. They must
// never crash, leak or trip UBSan; refusing the input is fine. Besides, the
// two pairs of readers that are documented to agree are held to it, as the
// unit tests do on fixed inputs (an abort is a finding):
//  - the fast YAML reader and yaml-cpp (manifest_stream_test.cc): where the
//    fast reader takes a document, its events equal yaml-cpp's for that
//    document, and it takes nothing yaml-cpp refuses;
//  - a document read into a message directly and through JSON
//    (manifest_direct_test.cc): where the direct way takes it, the JSON way
//    gives the same message, and the entry point gives the JSON way's
//    status.
//
// The first byte chooses what reads the rest:
//   0: ParseManifests (nftproxy YAML/JSON and Kubernetes manifests, Lists)
//   1: ForEachManifestInText with a default namespace and a sink that
//      stops after a few resources
//   2: the fast YAML reader against yaml-cpp
//   3: one document as nftproxy's own schema, both ways, and as a
//      Kubernetes object
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "manifest/k8s_manifest.h"
#include "manifest/manifest.h"
#include "manifest/manifest_json.h"
#include "manifest/resource_message.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

[[noreturn]] void Fail(const std::string& what, const std::string& input) {
  fprintf(stderr, "FINDING: manifest_fuzz: %s\ninput (C-escaped): \"%s\"\n", absl::CHexEscape(what).c_str(),
          absl::CHexEscape(input).c_str());
  abort();
}

// The events of a reader as text, marks included (as in manifest_stream_test).
class Trace : public YAML::EventHandler {
 public:
  // yaml-cpp counts lines from the start of the text it is given.
  explicit Trace(int line_offset = 0) : line_offset_(line_offset) {}
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
  std::string At(const YAML::Mark& m) const {
    return "@" + std::to_string(m.line + line_offset_) + ":" + std::to_string(m.column) + " ";
  }
  int line_offset_;
};

void ReadAll(const std::string& text) {
  std::vector<std::string> warnings;
  absl::StatusOr<std::vector<ManifestDoc>> docs = ParseManifests(text, "fuzz.yaml", &warnings);
  if (docs.ok()) {
    for (const ManifestDoc& d : *docs) {
      // What the CLI does with each: name it in messages, size it.
      (void)DocumentPlace(d);
      (void)DescribeResource(d.resource);
      (void)d.resource.ByteSizeLong();
    }
  }
}

void Stream(const std::string& text, uint8_t selector) {
  std::vector<std::string> warnings;
  ManifestOptions options;
  if (selector & 0x10) options.default_namespace = "fuzz-ns";
  const int stop_after = (selector >> 5) & 7;  // 0: never
  int seen = 0;
  absl::Status s = ForEachManifestInText(
      text, "fuzz.yaml",
      [&](ManifestDoc d) {
        if (d.resource.kind_case() == v1::Resource::KIND_NOT_SET) Fail("an empty resource was delivered", text);
        if (stop_after != 0 && ++seen >= stop_after) return absl::CancelledError("enough");
        return absl::OkStatus();
      },
      &warnings, options);
  (void)s;
}

// Document by document, as the reader (manifest.cc) uses them: where the
// fast reader takes a document, yaml-cpp reading that document alone (what
// the reader falls back to) gives the same events, and does not refuse it.
// (Not the whole stream through one yaml-cpp parser: yaml-cpp 0.7 loops
// forever, allocating, when asked for the next document after some broken
// ones, e.g. ",[" - jbeder/yaml-cpp#1040; the reader never asks it to.)
void FastReaderAgainstYamlCpp(const std::string& text) {
  ForEachYamlDocument(text, [&](const YamlDocumentText& doc) {
    Trace got;
    if (!FastReadYamlDocument(doc, &got)) return true;
    Trace want(doc.first_line);
    try {
      std::istringstream in{std::string(doc.text)};
      YAML::Parser parser(in);
      parser.HandleNextDocument(want);
    } catch (const YAML::Exception& e) {
      Fail(std::string("the fast YAML reader took a document yaml-cpp refuses: ") + e.what(), text);
    }
    if (got.text != want.text) {
      Fail("the fast YAML reader and yaml-cpp disagree\nfast:     " + got.text + "\nyaml-cpp: " + want.text, text);
    }
    return true;
  });
}

// Both ways of reading nftproxy's own schema (manifest_json.h).
void OwnSchemaBothWays(const std::string& text, uint8_t selector) {
  YamlNode doc;
  try {
    doc = FromYamlCpp(YAML::Load(text));
  } catch (const YAML::Exception&) {
    return;
  }
  static const char* const kKinds[] = {"Service", "EndpointSlice", "Workload"};
  const KindInfo* kind = KindByManifest(kKinds[(selector >> 4) % 3]);
  if (kind == nullptr) Fail("no such kind", kKinds[(selector >> 4) % 3]);
  absl::StatusOr<v1::Resource> via_json = absl::UnknownError("not run");
  bool direct = false;
  v1::Resource direct_result;
  absl::StatusOr<v1::Resource> entry = absl::UnknownError("not run");
  try {
    via_json = manifest_json_internal::ConvertViaJson(doc, *kind);
    direct = manifest_json_internal::FillDirectly(doc, *kind, &direct_result);
    entry = ConvertOwnDocument(doc, *kind);
  } catch (const std::exception&) {
    return;  // the document reader catches these at its edge (manifest.cc)
  }
  if (direct) {
    if (!via_json.ok()) {
      Fail("the direct way took a document the JSON way refuses: " + std::string(via_json.status().message()),
           text);
    }
    if (!google::protobuf::util::MessageDifferencer::Equals(direct_result, *via_json)) {
      Fail("the direct and JSON ways disagree\ndirect: " + direct_result.ShortDebugString() +
               "\njson:   " + via_json->ShortDebugString(),
           text);
    }
  }
  if (entry.status() != via_json.status()) {
    Fail("ConvertOwnDocument's status is not the JSON way's: " + entry.status().ToString() + " vs " +
             via_json.status().ToString(),
         text);
  }
  if (entry.ok() && !google::protobuf::util::MessageDifferencer::Equals(*entry, *via_json)) {
    Fail("ConvertOwnDocument's result is not the JSON way's", text);
  }
  // The same tree as a Kubernetes object where it claims to be one (the
  // translator's precondition; it does not throw).
  const YamlNode& api = doc.Get("apiVersion");
  const YamlNode& k = doc.Get("kind");
  if (doc.IsMap() && api.IsScalar() && k.IsScalar() && IsKubernetesObject(api.Scalar(), k.Scalar())) {
    absl::StatusOr<K8sTranslation> k8s = TranslateKubernetes(doc);
    (void)k8s;
  }
}

}  // namespace
}  // namespace nftproxy::manifest

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector & 3) {
    case 0: nftproxy::manifest::ReadAll(text); break;
    case 1: nftproxy::manifest::Stream(text, selector); break;
    case 2: nftproxy::manifest::FastReaderAgainstYamlCpp(text); break;
    case 3: nftproxy::manifest::OwnSchemaBothWays(text, selector); break;
  }
  return 0;
}
