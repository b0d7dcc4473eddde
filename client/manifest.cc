#include "client/manifest.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/k8s_manifest.h"
#include "client/manifest_json.h"
#include "client/resource_message.h"
#include "client/yaml_text.h"

namespace nftproxy::client {
namespace {

constexpr char kApiVersion[] = "nftproxy.io/v1";
// At most this many error lines per call; the rest are summarized.
constexpr size_t kMaxErrors = 20;

std::string ExpectedKinds() { return absl::StrCat("expected ", ManifestKinds(" or ")); }

// One document's result: its resources (a List or v1 Endpoints may give
// several) with their origin, and warnings. Errors and warnings are the text
// that follows "FILE: document N".
struct Converted {
  std::vector<std::pair<nftproxy::v1::Resource, std::string>> resources;
  std::vector<std::string> warnings;
};

std::string ScalarOf(const std::optional<YAML::Node>& n) {
  return n && n->IsScalar() ? n->Scalar() : "";
}

// A Kubernetes object, translated.
absl::StatusOr<Converted> ConvertKubernetes(const YAML::Node& doc, const std::string& api,
                                            const std::string& kind, const std::string& where) {
  std::string name;
  if (const YAML::Node meta = doc["metadata"]; meta.IsDefined() && meta.IsMap()) {
    const YAML::Node ns = meta["namespace"];
    const YAML::Node n = meta["name"];
    if (n.IsDefined() && n.IsScalar()) {
      name = absl::StrCat(" ", ns.IsDefined() && ns.IsScalar() ? ns.Scalar() : kDefaultNamespace, "/", n.Scalar());
    }
  }
  const std::string label = absl::StrCat(where, " (Kubernetes ", kind, name, "): ");
  absl::StatusOr<K8sTranslation> t = TranslateKubernetes(doc);
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(label, t.status().message()));
  Converted out;
  for (nftproxy::v1::Resource& r : t->resources) out.resources.emplace_back(std::move(r), api + " " + kind);
  for (const std::string& w : t->warnings) out.warnings.push_back(label + w);
  return out;
}

// Converts one non-empty document (or one item of a List).
absl::StatusOr<Converted> ConvertNode(const YAML::Node& doc, const std::string& where, bool in_list) {
  if (!doc.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", Position(doc.Mark()),
                     "expected a mapping with a \"kind\", got ",
                     NodeTypeName(doc)));
  }
  std::optional<YAML::Node> kind_node;
  std::optional<YAML::Node> api_node;
  std::optional<YAML::Node> items_node;
  for (const auto& kv : doc) {
    if (!kv.first.IsScalar()) continue;
    const std::string& key = kv.first.Scalar();
    // emplace, not assignment: assigning to a YAML::Node changes the node.
    if (key == "kind" && !kind_node) {
      kind_node.emplace(kv.second);
    } else if (key == "apiVersion" && !api_node) {
      api_node.emplace(kv.second);
    } else if (key == "items" && !items_node) {
      items_node.emplace(kv.second);
    }
  }
  if (!kind_node || kind_node->IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": missing kind (", ExpectedKinds(), ")"));
  }
  if (!kind_node->IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", Position(kind_node->Mark()), "kind must be a string, not ",
                     NodeTypeName(*kind_node), " (", ExpectedKinds(), ")"));
  }
  const std::string& kind_str = kind_node->Scalar();
  const bool has_api = api_node && !api_node->IsNull();
  const std::string api = ScalarOf(api_node);

  // kubectl prints `kind: List`; the API server itself ServiceList etc.
  const bool is_list = kind_str == "List" || (absl::EndsWith(kind_str, "List") && items_node && has_api);
  if (is_list && !in_list) {
    Converted out;
    if (!items_node || items_node->IsNull()) return out;
    if (!items_node->IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " (", kind_str, "): ", Position(items_node->Mark()),
                                                     "items: expected a list"));
    }
    size_t i = 0;
    for (const YAML::Node& item : *items_node) {
      absl::StatusOr<Converted> c = ConvertNode(item, absl::StrCat(where, ", items[", i++, "]"), true);
      if (!c.ok()) return c.status();
      for (auto& r : c->resources) out.resources.push_back(std::move(r));
      for (auto& w : c->warnings) out.warnings.push_back(std::move(w));
    }
    return out;
  }
  if (has_api && api != kApiVersion) {
    if (IsKubernetesObject(api, kind_str)) return ConvertKubernetes(doc, api, kind_str, where);
    const std::string got = api_node->IsScalar() ? Quote(api) : NodeTypeName(*api_node);
    if (kind_str == "EndpointSlice" && api == "discovery.k8s.io/v1beta1") {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " (Kubernetes EndpointSlice): apiVersion discovery.k8s.io/v1beta1 is not supported; "
          "use discovery.k8s.io/v1 (what `kubectl get endpointslices -o yaml` prints)"));
    }
    if (KindByManifest(kind_str) != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " (", kind_str, "): unsupported apiVersion ", got, " (expected ", kApiVersion,
          " for nftproxy's schema, or Kubernetes' v1 Service / discovery.k8s.io/v1 EndpointSlice)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": kind ", Quote(kind_str), " (apiVersion ", got,
        ") is not supported (nftproxy reads Kubernetes v1 Service, v1 Endpoints, "
        "discovery.k8s.io/v1 EndpointSlice and List, and its own ", ManifestKinds(" and "), ")"));
  }
  const KindInfo* kind = KindByManifest(kind_str);
  if (kind == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": unknown kind ", Quote(kind_str), " (", ExpectedKinds(), ")"));
  }
  absl::StatusOr<nftproxy::v1::Resource> r = ConvertOwnDocument(doc, *kind);
  if (!r.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " (", kind->manifest, "): ", r.status().message()));
  }
  Converted out;
  out.resources.emplace_back(std::move(*r), "");
  return out;
}

// Parser event sink that ignores everything; used to find which document a
// syntax error is in.
class NullEventHandler : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The 1-based number of the document in which parsing `text` fails.
int FailingDocument(const std::string& text) {
  int parsed = 0;
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    NullEventHandler handler;
    while (parser.HandleNextDocument(handler)) ++parsed;
  } catch (...) {
  }
  return parsed + 1;
}

absl::Status JoinErrors(const std::vector<std::string>& errors,
                        size_t suppressed) {
  std::string msg = absl::StrJoin(errors, "\n");
  if (suppressed > 0) {
    absl::StrAppend(&msg, "\n... and ", suppressed, " more error",
                    suppressed == 1 ? "" : "s");
  }
  return absl::InvalidArgumentError(msg);
}

}  // namespace

absl::StatusOr<std::vector<ManifestDoc>> ParseDocuments(
    std::string_view text, const std::string& file, std::vector<std::string>* warnings) {
  const std::string input(text);
  std::vector<YAML::Node> nodes;
  try {
    nodes = YAML::LoadAll(input);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        OneLine(absl::StrCat(file, ": document ", FailingDocument(input), ": ",
                             Position(e.mark), e.msg)));
  }

  std::vector<ManifestDoc> docs;
  std::vector<std::string> errors;
  size_t suppressed = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    const YAML::Node& node = nodes[i];
    if (!node.IsDefined() || node.IsNull()) continue;  // empty document
    absl::StatusOr<Converted> converted;
    try {
      converted = ConvertNode(node, "", false);
    } catch (const YAML::Exception& e) {
      converted = absl::InvalidArgumentError(
          absl::StrCat(": ", Position(e.mark), e.msg));
    }
    const std::string prefix = absl::StrCat(file, ": document ", index);
    if (!converted.ok()) {
      if (errors.size() < kMaxErrors) {
        errors.push_back(OneLine(absl::StrCat(prefix, converted.status().message())));
      } else {
        ++suppressed;
      }
      continue;
    }
    if (warnings != nullptr) {
      for (const std::string& w : converted->warnings) warnings->push_back(OneLine(prefix + w));
    }
    for (auto& [resource, origin] : converted->resources) {
      ManifestDoc doc;
      doc.file = file;
      doc.index = index;
      doc.resource = std::move(resource);
      doc.origin = std::move(origin);
      docs.push_back(std::move(doc));
    }
  }
  if (!errors.empty()) return JoinErrors(errors, suppressed);
  return docs;
}

// A proxy uses EndpointSlices; v1 Endpoints given together with slices for
// the same service would count every endpoint twice. Leaves them out.
absl::StatusOr<std::vector<ManifestDoc>> DropShadowedEndpoints(
    absl::StatusOr<std::vector<ManifestDoc>> docs, std::vector<std::string>* warnings) {
  if (!docs.ok()) return docs;
  constexpr char kEndpoints[] = "v1 Endpoints";
  auto service_of = [](const ManifestDoc& d) {
    const nftproxy::v1::EndpointSlice& s = d.resource.endpoint_slice();
    return absl::StrCat(s.metadata().namespace_().empty() ? kDefaultNamespace : s.metadata().namespace_(), "/",
                        s.service_name());
  };
  std::vector<std::string> sliced;
  for (const ManifestDoc& d : *docs) {
    if (d.resource.has_endpoint_slice() && d.origin != kEndpoints) sliced.push_back(service_of(d));
  }
  std::vector<ManifestDoc> kept;
  for (ManifestDoc& d : *docs) {
    if (d.origin == kEndpoints &&
        std::find(sliced.begin(), sliced.end(), service_of(d)) != sliced.end()) {
      if (warnings != nullptr) {
        warnings->push_back(absl::StrCat(d.file, ": document ", d.index, " (Kubernetes Endpoints ",
                                         service_of(d), "): left out: EndpointSlices for the same "
                                         "service are given too, and a proxy uses those"));
      }
      continue;
    }
    kept.push_back(std::move(d));
  }
  return kept;
}

absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text,
                                                        const std::string& file,
                                                        std::vector<std::string>* warnings) {
  try {
    return DropShadowedEndpoints(ParseDocuments(text, file, warnings), warnings);
  } catch (const std::exception& e) {
    return absl::InternalError(
        OneLine(absl::StrCat(file, ": cannot parse manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(file, ": cannot parse manifests: unknown error"));
  }
}

std::string DescribeResource(const nftproxy::v1::Resource& r) {
  if (FindKind(r) == nullptr) return "empty resource";
  Key key = KeyOf(r);
  if (key.name.empty()) key.name = "(unnamed)";
  return Describe(key);
}

}  // namespace nftproxy::client
