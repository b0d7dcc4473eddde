#include "manifest/manifest.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "manifest/k8s_manifest.h"
#include "manifest/manifest_json.h"
#include "manifest/resource_message.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
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
  // A Kubernetes Service's dropped selector: where, and the warning's text.
  std::vector<std::pair<Key, std::string>> selectors;
};

std::string ScalarOf(const YamlNode* n) { return n != nullptr && n->IsScalar() ? n->Scalar() : ""; }

// A Kubernetes object, translated.
absl::StatusOr<Converted> ConvertKubernetes(const YamlNode& doc, const std::string& api,
                                            const std::string& kind, const std::string& where) {
  std::string name;
  if (const YamlNode& meta = doc.Get("metadata"); meta.IsMap()) {
    const YamlNode& ns = meta.Get("namespace");
    const YamlNode& n = meta.Get("name");
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
  if (!t->selector.is_null() && !out.resources.empty()) {
    out.selectors.emplace_back(
        KeyOf(out.resources[0].first),
        absl::StrCat(label, Position(t->selector),
                     "spec.selector: not used, and no EndpointSlices (or Endpoints) for this service are in the "
                     "input: a proxy takes a Service's endpoints from its EndpointSlices; apply them along with the "
                     "Service (kubectl get endpointslices -l kubernetes.io/service-name=NAME -o yaml)"));
  }
  return out;
}

// Converts one non-empty document (or one item of a List).
absl::StatusOr<Converted> ConvertNode(const YamlNode& doc, const std::string& where, bool in_list) {
  if (!doc.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", Position(doc.Mark()),
                     "expected a mapping with a \"kind\", got ",
                     NodeTypeName(doc)));
  }
  const YamlNode* kind_node = nullptr;
  const YamlNode* api_node = nullptr;
  const YamlNode* items_node = nullptr;
  for (const auto& kv : doc.Entries()) {
    if (!kv.first.IsScalar()) continue;
    const std::string& key = kv.first.Scalar();
    if (key == "kind" && !kind_node) {
      kind_node = &kv.second;
    } else if (key == "apiVersion" && !api_node) {
      api_node = &kv.second;
    } else if (key == "items" && !items_node) {
      items_node = &kv.second;
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
    for (const YamlNode& item : items_node->Items()) {
      absl::StatusOr<Converted> c = ConvertNode(item, absl::StrCat(where, ", items[", i++, "]"), true);
      if (!c.ok()) return c.status();
      for (auto& r : c->resources) out.resources.push_back(std::move(r));
      for (auto& w : c->warnings) out.warnings.push_back(std::move(w));
      for (auto& sel : c->selectors) out.selectors.push_back(std::move(sel));
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

// Builds the tree of one document from parser events. The items of a
// top-level `items` sequence (a List's) are not kept: each goes to `on_item`
// as soon as it is complete, so a List of any length costs one item's tree.
class TreeBuilder : public YAML::EventHandler {
 public:
  // Nodes that aliases may copy into one document, against alias bombs.
  static constexpr size_t kMaxAliasNodes = size_t{1} << 20;

  std::function<void(const YamlNode& item, int index)> on_item;

  // Starts a document. Marks of yaml-cpp, which reads the document alone,
  // are moved by `line_offset`/`pos_offset`; the first `skip_items` items
  // were already handed over by a read that gave up half-way.
  void Reset(int line_offset, size_t pos_offset, int skip_items) {
    stack_.clear();
    anchors_.clear();
    root_ = YamlNode();
    line_offset_ = line_offset;
    pos_offset_ = pos_offset;
    skip_items_ = skip_items;
    items_ = 0;
    streamed_ = false;
    root_kind_.clear();
    alias_nodes_ = 0;
    error_.clear();
  }

  YamlNode& root() { return root_; }
  // Whether the root's `items` went to `on_item`, and how many there were.
  bool streamed() const { return streamed_; }
  int items() const { return items_; }
  const std::string& error() const { return error_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Add(YamlNode(YAML::NodeType::Null, Moved(mark)), anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) return Add(YamlNode(YAML::NodeType::Null, Moved(mark)), 0);
    alias_nodes_ += it->second.CountNodes();
    if (alias_nodes_ > kMaxAliasNodes) {
      error_ = absl::StrCat(Position(Moved(mark)), "document too large (after expanding aliases)");
      return Add(YamlNode(YAML::NodeType::Null, Moved(mark)), 0);
    }
    Add(YamlNode(it->second), 0);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    YamlNode n(YAML::NodeType::Scalar, Moved(mark));
    n.SetScalar(value, tag == "?");
    Add(std::move(n), anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(YamlNode(YAML::NodeType::Sequence, Moved(mark)), anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(YamlNode(YAML::NodeType::Map, Moved(mark)), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    YamlNode node;
    YAML::anchor_t anchor;
    bool items;  // the root's `items`, streamed
  };

  YAML::Mark Moved(YAML::Mark m) const {
    if (m.is_null()) return m;
    m.line += line_offset_;
    m.pos += static_cast<int>(pos_offset_);
    return m;
  }

  void Open(YamlNode n, YAML::anchor_t anchor) {
    // A List's items come before its `kind` in kubectl's output (keys are
    // sorted), so items are streamed unless the kind is known to be another.
    bool items = false;
    if (stack_.size() == 1 && n.IsSequence() && stack_[0].node.IsMap()) {
      const std::vector<YamlNode>& kids = stack_[0].node.MutableKids();
      items = kids.size() % 2 == 1 && kids.back().IsScalar() && kids.back().Scalar() == "items" &&
              (root_kind_.empty() || absl::EndsWith(root_kind_, "List"));
    }
    stack_.push_back(Frame{std::move(n), anchor, items});
  }

  void Close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.items) streamed_ = true;
    Add(std::move(f.node), f.anchor);
  }

  void Add(YamlNode n, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = n;
    if (stack_.empty()) {
      root_ = std::move(n);
      return;
    }
    Frame& parent = stack_.back();
    if (parent.items) {
      const int index = items_++;
      if (index >= skip_items_ && on_item) on_item(n, index);
      return;
    }
    std::vector<YamlNode>& kids = parent.node.MutableKids();
    if (stack_.size() == 1 && parent.node.IsMap() && kids.size() % 2 == 1 && kids.back().IsScalar() &&
        kids.back().Scalar() == "kind" && n.IsScalar()) {
      root_kind_ = n.Scalar();
    }
    kids.push_back(std::move(n));
  }

  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, YamlNode> anchors_;
  YamlNode root_;
  int line_offset_ = 0;
  size_t pos_offset_ = 0;
  int skip_items_ = 0;
  int items_ = 0;
  bool streamed_ = false;
  std::string root_kind_;
  size_t alias_nodes_ = 0;
  std::string error_;
};

constexpr char kEndpointsOrigin[] = "v1 Endpoints";

std::string ServiceOfSlice(const nftproxy::v1::EndpointSlice& s) {
  return absl::StrCat(s.metadata().namespace_().empty() ? kDefaultNamespace : s.metadata().namespace_(), "/",
                      s.service_name());
}

std::string KeyString(const Key& k) { return absl::StrCat(static_cast<int>(k.kind), "/", k.ns, "/", k.name); }

}  // namespace

std::string DocumentPlace(const ManifestDoc& d) {
  std::string out = absl::StrCat(d.file, ": document ", d.index);
  if (d.item >= 0) absl::StrAppend(&out, ", items[", d.item, "]");
  return out;
}

namespace manifest_internal {

class Reader::Impl {
 public:
  Impl(const std::function<absl::Status(ManifestDoc, size_t)>& each, std::vector<std::string>* warnings,
       const ManifestOptions& options)
      : each_(each), warnings_(warnings), options_(options) {
    builder_.on_item = [this](const YamlNode& item, int index) { Item(item, index); };
  }

  bool ReadText(std::string_view text, const std::string& file) {
    file_ = file;
    files_.push_back(file);
    int index = 0;
    ForEachYamlDocument(absl::string_view(text.data(), text.size()), [&](const YamlDocumentText& doc) {
      index_ = ++index;
      Document(doc);
      return !stopped_;
    });
    return !stopped_;
  }

  absl::Status Finish(const std::string& path) {
    if (!stopped_) {
      for (Held& h : held_) {
        if (sliced_.count(ServiceOfSlice(h.doc.resource.endpoint_slice()))) {
          Warn(absl::StrCat(DocumentPlace(h.doc), " (Kubernetes Endpoints ",
                            ServiceOfSlice(h.doc.resource.endpoint_slice()),
                            "): left out: EndpointSlices for the same service are given too, and a proxy uses those"));
          continue;
        }
        Deliver(std::move(h.doc), h.ordinal);
        if (stopped_) break;
      }
    }
    held_.clear();
    for (auto& [service, warning] : selectors_) Warn(std::move(warning));
    selectors_.clear();
    if (!sink_error_.ok()) return sink_error_;
    if (!errors_.empty()) {
      std::string msg = absl::StrJoin(errors_, "\n");
      if (suppressed_ > 0) {
        absl::StrAppend(&msg, "\n... and ", suppressed_, " more error", suppressed_ == 1 ? "" : "s");
      }
      return absl::InvalidArgumentError(msg);
    }
    if (!path.empty() && delivered_ == 0) {
      if (objects_ == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no objects (the input holds no resources)"));
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": no objects to send: every object in the input was left out (see the warnings)"));
    }
    return absl::OkStatus();
  }


 private:
  struct Place {
    int file;
    int index;
    int item;
  };
  struct Held {
    ManifestDoc doc;
    size_t ordinal;
  };

  void Warn(std::string w) {
    if (warnings_ != nullptr) warnings_->push_back(OneLine(std::move(w)));
  }

  void Error(std::string e) {
    if (errors_.size() < kMaxErrors) {
      errors_.push_back(OneLine(std::move(e)));
    } else {
      ++suppressed_;
    }
  }

  std::string Prefix(int item) const {
    std::string p = absl::StrCat(file_, ": document ", index_);
    if (item >= 0) absl::StrAppend(&p, ", items[", item, "]");
    return p;
  }

  void Document(const YamlDocumentText& doc) {
    builder_.Reset(0, 0, 0);
    if (!FastReadYamlDocument(doc, &builder_)) {
      // yaml-cpp reads what the fast reader does not; items already handed
      // over are not read twice.
      builder_.Reset(doc.first_line, doc.offset, builder_.items());
      try {
        std::istringstream in{std::string(doc.text)};
        YAML::Parser parser(in);
        parser.HandleNextDocument(builder_);
      } catch (const YAML::Exception& e) {
        YAML::Mark mark = e.mark;
        if (!mark.is_null()) mark.line += doc.first_line;
        Error(absl::StrCat(file_, ": document ", index_, ": ", Position(mark), e.msg));
        return;
      }
    }
    if (!builder_.error().empty()) return Error(absl::StrCat(Prefix(-1), ": ", builder_.error()));
    const YamlNode& root = builder_.root();
    if (builder_.streamed()) {
      const YamlNode& kind = root.Get("kind");
      const bool has_api = root.Get("apiVersion").IsDefined() && !root.Get("apiVersion").IsNull();
      const std::string k = kind.IsScalar() ? kind.Scalar() : "";
      if (!(k == "List" || (absl::EndsWith(k, "List") && has_api))) {
        Error(absl::StrCat(Prefix(-1), ": ", Position(root.Mark()),
                           "items: only a List has items (", k.empty() ? "missing kind" : "kind " + Quote(k), ")"));
      }
      return;
    }
    if (!root.IsDefined() || root.IsNull()) return;  // empty document
    ++objects_;
    Convert(root, -1);
  }

  void Item(const YamlNode& item, int index) {
    ++objects_;
    Convert(item, index);
  }

  void Convert(const YamlNode& node, int item) {
    absl::StatusOr<Converted> converted;
    try {
      converted = ConvertNode(node, item >= 0 ? absl::StrCat(", items[", item, "]") : "", item >= 0);
    } catch (const std::exception& e) {
      converted = absl::InvalidArgumentError(absl::StrCat(": cannot read the document: ", e.what()));
    }
    // Built only for a message: most documents have none.
    auto prefix = [&] { return absl::StrCat(file_, ": document ", index_); };
    if (!converted.ok()) return Error(absl::StrCat(prefix(), converted.status().message()));
    for (const std::string& w : converted->warnings) Warn(prefix() + w);
    for (auto& [key, warning] : converted->selectors) {
      const std::string service = absl::StrCat(key.ns, "/", key.name);
      if (!endpoints_given_.count(service)) selectors_.emplace(service, prefix() + warning);
    }
    for (auto& [resource, origin] : converted->resources) {
      ManifestDoc doc;
      doc.file = file_;
      doc.index = index_;
      doc.item = item;
      doc.resource = std::move(resource);
      doc.origin = std::move(origin);
      Accept(std::move(doc));
      if (stopped_) return;
    }
  }

  void Accept(ManifestDoc doc) {
    const size_t ordinal = ordinal_++;
    if (v1::ObjectMeta* m = MutableMetaOf(&doc.resource);
        m != nullptr && m->namespace_().empty() && !options_.default_namespace.empty()) {
      m->set_namespace_(options_.default_namespace);
    }
    if (doc.resource.has_endpoint_slice()) {
      const std::string service = ServiceOfSlice(doc.resource.endpoint_slice());
      endpoints_given_.insert(service);
      selectors_.erase(service);
      if (doc.origin == kEndpointsOrigin) {
        if (sliced_.count(service)) {
          Warn(absl::StrCat(DocumentPlace(doc), " (Kubernetes Endpoints ", service,
                            "): left out: EndpointSlices for the same service are given too, and a proxy uses those"));
          return;
        }
        // Slices for the service may come later: decided at the end.
        held_.push_back(Held{std::move(doc), ordinal});
        return;
      }
      sliced_.insert(service);
    }
    Deliver(std::move(doc), ordinal);
  }

  void Deliver(ManifestDoc doc, size_t ordinal) {
    Key key = KeyOf(doc.resource);
    const auto [it, inserted] = seen_.try_emplace(KeyString(key), Place{static_cast<int>(files_.size()) - 1,
                                                                        doc.index, doc.item});
    if (!inserted) {
      ManifestDoc first;
      first.file = files_[it->second.file];
      first.index = it->second.index;
      first.item = it->second.item;
      return Error(absl::StrCat(DocumentPlace(doc), ": ", DescribeResource(doc.resource), " is given twice: also in ",
                                DocumentPlace(first), " (a resource may appear once in an input)"));
    }
    if (!errors_.empty() || stopped_) return;
    ++delivered_;
    absl::Status s = each_(std::move(doc), ordinal);
    if (!s.ok()) {
      sink_error_ = std::move(s);
      stopped_ = true;
    }
  }

  std::function<absl::Status(ManifestDoc, size_t)> each_;
  std::vector<std::string>* warnings_;
  ManifestOptions options_;
  TreeBuilder builder_;
  std::string file_;
  int index_ = 0;
  std::vector<std::string> files_;
  std::vector<std::string> errors_;
  size_t suppressed_ = 0;
  absl::Status sink_error_;
  bool stopped_ = false;
  size_t ordinal_ = 0;
  size_t objects_ = 0;
  size_t delivered_ = 0;
  std::unordered_map<std::string, Place> seen_;
  std::unordered_set<std::string> sliced_;           // services with real slices
  std::unordered_set<std::string> endpoints_given_;  // services with any slice
  std::unordered_map<std::string, std::string> selectors_;  // pending warnings
  std::vector<Held> held_;
};

Reader::Reader(const std::function<absl::Status(ManifestDoc, size_t)>& each, std::vector<std::string>* warnings,
               const ManifestOptions& options)
    : impl_(std::make_unique<Impl>(each, warnings, options)) {}
Reader::~Reader() = default;
bool Reader::ReadText(std::string_view text, const std::string& file) { return impl_->ReadText(text, file); }
absl::Status Reader::Finish(const std::string& path) { return impl_->Finish(path); }

absl::StatusOr<std::vector<ManifestDoc>> Collect(const std::string& name, const char* verb,
                                                 std::vector<std::string>* warnings,
                                                 const std::function<absl::Status(Reader*)>& read) {
  std::vector<std::pair<size_t, ManifestDoc>> docs;
  try {
    Reader reader(
        [&](ManifestDoc d, size_t ordinal) {
          docs.emplace_back(ordinal, std::move(d));
          return absl::OkStatus();
        },
        warnings, {});
    if (absl::Status s = read(&reader); !s.ok()) return s;
  } catch (const std::exception& e) {
    return absl::InternalError(OneLine(absl::StrCat(name, ": cannot ", verb, " manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(absl::StrCat(name, ": cannot ", verb, " manifests: unknown error"));
  }
  std::sort(docs.begin(), docs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ManifestDoc> out;
  out.reserve(docs.size());
  for (auto& d : docs) out.push_back(std::move(d.second));
  return out;
}

}  // namespace manifest_internal

absl::Status ForEachManifestInTexts(const std::vector<std::pair<std::string, std::string>>& files,
                                    const ManifestSink& each, std::vector<std::string>* warnings,
                                    const ManifestOptions& options) {
  std::string name;
  try {
    manifest_internal::Reader reader([&](ManifestDoc d, size_t) { return each(std::move(d)); }, warnings, options);
    for (const auto& [file, text] : files) {
      name = file;
      if (!reader.ReadText(text, file)) break;
    }
    return reader.Finish("");
  } catch (const std::exception& e) {
    return absl::InternalError(OneLine(absl::StrCat(name, ": cannot parse manifests: ", e.what())));
  }
}

absl::Status ForEachManifestInText(std::string_view text, const std::string& file, const ManifestSink& each,
                                   std::vector<std::string>* warnings, const ManifestOptions& options) {
  try {
    manifest_internal::Reader reader([&](ManifestDoc d, size_t) { return each(std::move(d)); }, warnings, options);
    reader.ReadText(text, file);
    return reader.Finish("");
  } catch (const std::exception& e) {
    return absl::InternalError(OneLine(absl::StrCat(file, ": cannot parse manifests: ", e.what())));
  }
}

absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text, const std::string& file,
                                                        std::vector<std::string>* warnings) {
  return manifest_internal::Collect(file, "parse", warnings, [&](manifest_internal::Reader* reader) {
    reader->ReadText(text, file);
    return reader->Finish("");
  });
}

std::string DescribeResource(const nftproxy::v1::Resource& r) {
  if (FindKind(r) == nullptr) return "empty resource";
  Key key = KeyOf(r);
  if (key.name.empty()) key.name = "(unnamed)";
  return Describe(key);
}

}  // namespace nftproxy::manifest
