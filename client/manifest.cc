#include "client/manifest.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "client/k8s_manifest.h"

namespace nftproxy::client {
namespace {

namespace fs = std::filesystem;

constexpr char kApiVersion[] = "nftproxy.io/v1";
constexpr char kExpectedKinds[] = "expected Service, EndpointSlice or Workload";
// Guards against recursive aliases (`&a [*a]`) and absurd nesting.
constexpr int kMaxDepth = 100;
// Guards against alias expansion bombs.
constexpr size_t kMaxJsonSize = size_t{64} << 20;
// At most this many error lines per call; the rest are summarized.
constexpr size_t kMaxErrors = 20;

enum class Kind { kService, kEndpointSlice, kWorkload };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kService:
      return "Service";
    case Kind::kEndpointSlice:
      return "EndpointSlice";
    case Kind::kWorkload:
      return "Workload";
  }
  return "?";
}

// Quotes a user-supplied string for an error message.
std::string Quote(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

// Error messages are one line each.
std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

std::string Position(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1,
                      ": ");
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool AllDigits(absl::string_view s, size_t from) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i) {
    if (!IsDigit(s[i])) return false;
  }
  return true;
}

// [-+]?[0-9]+ -> JSON integer text (no '+', no leading zeros).
std::optional<std::string> DecimalInt(absl::string_view s) {
  size_t i = 0;
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (!AllDigits(s, i)) return std::nullopt;
  while (i + 1 < s.size() && s[i] == '0') ++i;
  return absl::StrCat(neg ? "-" : "", s.substr(i));
}

// 0x[0-9a-fA-F]+ or 0o[0-7]+ -> decimal text, if it fits in 64 bits.
std::optional<std::string> HexOrOctalInt(absl::string_view s) {
  if (s.size() < 3 || s[0] != '0') return std::nullopt;
  unsigned base;
  if (s[1] == 'x') {
    base = 16;
  } else if (s[1] == 'o') {
    base = 8;
  } else {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    char c = s[i];
    unsigned d;
    if (IsDigit(c)) {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    if (d >= base) return std::nullopt;
    if (v > (UINT64_MAX - d) / base) return std::nullopt;
    v = v * base + d;
  }
  return absl::StrCat(v);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? -> JSON number text.
std::optional<std::string> Float(absl::string_view s) {
  size_t i = 0;
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    i = 1;
  }
  size_t int_begin = i;
  while (i < s.size() && IsDigit(s[i])) ++i;
  absl::string_view int_part = s.substr(int_begin, i - int_begin);
  bool has_dot = false;
  absl::string_view frac;
  if (i < s.size() && s[i] == '.') {
    has_dot = true;
    size_t frac_begin = ++i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    frac = s.substr(frac_begin, i - frac_begin);
  }
  if (int_part.empty() && frac.empty()) return std::nullopt;
  std::string exp;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    std::string sign;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) sign = s[i++];
    if (!AllDigits(s, i)) return std::nullopt;
    exp = absl::StrCat("e", sign, s.substr(i));
    i = s.size();
  }
  if (i != s.size()) return std::nullopt;
  while (int_part.size() > 1 && int_part[0] == '0') int_part.remove_prefix(1);
  return absl::StrCat(neg ? "-" : "", int_part.empty() ? "0" : int_part,
                      has_dot ? "." : "", has_dot && frac.empty() ? "0" : "",
                      frac, exp);
}

// For a plain (unquoted) scalar: the bare JSON token it stands for (a number,
// true/false or null), or a quoted JSON string for .inf/.nan (which is how
// protobuf's JSON mapping spells them); nullopt if it is just a string.
std::optional<std::string> PlainScalarToken(const std::string& s) {
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return "null";
  if (s == "true" || s == "True" || s == "TRUE") return "true";
  if (s == "false" || s == "False" || s == "FALSE") return "false";
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf" ||
      s == "+.Inf" || s == "+.INF") {
    return "\"Infinity\"";
  }
  if (s == "-.inf" || s == "-.Inf" || s == "-.INF") return "\"-Infinity\"";
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return "\"NaN\"";
  if (auto v = DecimalInt(s)) return v;
  if (auto v = HexOrOctalInt(s)) return v;
  if (auto v = Float(s)) return v;
  return std::nullopt;
}

bool LooksNumeric(const std::string& s) {
  return DecimalInt(s) || HexOrOctalInt(s) || Float(s);
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

const char* NodeTypeName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "undefined";
}

// Levenshtein distance, for "did you mean" suggestions.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean \"clusterIps\"?)" or "".
std::string Suggestion(const google::protobuf::Descriptor* desc, absl::string_view key) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 4) + 1;
  for (int i = 0; i < desc->field_count(); ++i) {
    const std::string& name = desc->field(i)->json_name();
    const size_t d = EditDistance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best.empty() ? "" : absl::StrCat("; did you mean \"", best, "\"?");
}

// A field by its JSON name (lowerCamelCase) or its proto name.
const google::protobuf::FieldDescriptor* FieldByJsonName(const google::protobuf::Descriptor* desc,
                                                         const std::string& name) {
  for (int i = 0; i < desc->field_count(); ++i) {
    if (desc->field(i)->json_name() == name) return desc->field(i);
  }
  return desc->FindFieldByName(name);
}

// For a field holding a message, the message type whose field names are
// checked; nullptr for scalars and well-known types (Duration, ...).
const google::protobuf::Descriptor* CheckedType(const google::protobuf::FieldDescriptor* f) {
  if (f->is_map()) f = f->message_type()->map_value();
  if (f->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE) return nullptr;
  if (f->message_type()->file()->package() == "google.protobuf") return nullptr;
  return f->message_type();
}

// Converts one document's node tree to JSON text.
class JsonConverter {
 public:
  explicit JsonConverter(Kind kind, const google::protobuf::Descriptor* desc) : kind_(kind), desc_(desc) {}

  // Converts the top-level mapping, leaving out `kind` and `apiVersion`.
  bool ConvertDocument(const YAML::Node& root) { return Value(root, 0, desc_, false, true); }

  const std::string& json() const { return out_; }
  const std::string& error() const { return error_; }

 private:
  std::string PathString() const {
    std::string s;
    for (const std::string& p : path_) {
      if (!s.empty() && p[0] != '[') s.push_back('.');
      s.append(p);
    }
    return s;
  }

  bool Fail(const YAML::Mark& mark, absl::string_view msg) {
    std::string where = PathString();
    error_ = absl::StrCat(Position(mark), msg,
                          where.empty() ? "" : absl::StrCat(" (in ", where, ")"));
    return false;
  }

  // In a Service, spec.ports[i].targetPort.
  bool AtServicePortField() const {
    return kind_ == Kind::kService && path_.size() == 3 &&
           path_[0] == "spec" && path_[1] == "ports" && path_[2][0] == '[';
  }

  // `desc`: the message type `n` holds (nullptr: not checked); `map_field`:
  // `n` is a protobuf map (its keys are data, its values of type `desc`).
  bool Value(const YAML::Node& n, int depth, const google::protobuf::Descriptor* desc, bool map_field,
             bool top = false) {
    if (depth > kMaxDepth) {
      // No path: it would be kMaxDepth elements long.
      error_ = absl::StrCat(Position(n.Mark()),
                            "nesting too deep (or a recursive alias)");
      return false;
    }
    if (out_.size() > kMaxJsonSize) {
      return Fail(n.Mark(), "document too large (after expanding aliases)");
    }
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out_.append("null");
        return true;
      case YAML::NodeType::Scalar: {
        if (n.Tag() == "?") {
          if (auto token = PlainScalarToken(n.Scalar())) {
            out_.append(*token);
            return true;
          }
        }
        AppendJsonString(n.Scalar(), &out_);
        return true;
      }
      case YAML::NodeType::Sequence: {
        out_.push_back('[');
        size_t i = 0;
        for (const YAML::Node& item : n) {
          if (i > 0) out_.push_back(',');
          path_.push_back(absl::StrCat("[", i, "]"));
          if (!Value(item, depth + 1, desc, false)) return false;
          path_.pop_back();
          ++i;
        }
        out_.push_back(']');
        return true;
      }
      case YAML::NodeType::Map:
        return Map(n, depth, desc, map_field, top);
    }
    return Fail(n.Mark(), "unsupported node");
  }

  bool Map(const YAML::Node& n, int depth, const google::protobuf::Descriptor* desc, bool map_field,
           bool top) {
    out_.push_back('{');
    std::vector<std::string> seen;
    bool first = true;
    for (const auto& kv : n) {
      const YAML::Node& k = kv.first;
      const YAML::Node& v = kv.second;
      if (!k.IsScalar() && !k.IsNull()) {
        return Fail(k.Mark(), absl::StrCat("a key must be a string, not ",
                                           NodeTypeName(k)));
      }
      std::string key = k.IsScalar() ? k.Scalar() : "";
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        return Fail(k.Mark(), absl::StrCat("duplicate key ", Quote(key)));
      }
      seen.push_back(key);
      if (top && (key == "kind" || key == "apiVersion")) continue;
      std::string json_key = key;
      if (key == "targetPort" && AtServicePortField() && v.IsScalar() &&
          !LooksNumeric(v.Scalar())) {
        json_key = "targetPortName";
      }
      const google::protobuf::Descriptor* child = map_field ? desc : nullptr;
      bool child_map = false;
      if (desc != nullptr && !map_field) {
        const google::protobuf::FieldDescriptor* f = FieldByJsonName(desc, json_key);
        if (f == nullptr) {
          path_.push_back(key);
          error_ = absl::StrCat(Position(k.Mark()), PathString(), ": unknown field (", desc->name(),
                                " has no field ", Quote(key), Suggestion(desc, key), ")");
          return false;
        }
        child = CheckedType(f);
        child_map = f->is_map();
      }
      if (!first) out_.push_back(',');
      first = false;
      AppendJsonString(json_key, &out_);
      out_.push_back(':');
      path_.push_back(key);
      if (!Value(v, depth + 1, child, child_map)) return false;
      path_.pop_back();
    }
    out_.push_back('}');
    return true;
  }

  Kind kind_;
  const google::protobuf::Descriptor* desc_;
  std::string out_;
  std::string error_;
  std::vector<std::string> path_;
};

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

// nftproxy's own schema: the message of `kind` in protobuf's JSON mapping.
absl::StatusOr<nftproxy::v1::Resource> ConvertOwn(const YAML::Node& doc, Kind kind,
                                                  const std::string& where) {
  nftproxy::v1::Resource resource;
  google::protobuf::Message* msg = nullptr;
  switch (kind) {
    case Kind::kService:
      msg = resource.mutable_service();
      break;
    case Kind::kEndpointSlice:
      msg = resource.mutable_endpoint_slice();
      break;
    case Kind::kWorkload:
      msg = resource.mutable_workload();
      break;
  }
  JsonConverter converter(kind, msg->GetDescriptor());
  if (!converter.ConvertDocument(doc)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " (", KindName(kind), "): ", converter.error()));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status =
      google::protobuf::util::JsonStringToMessage(converter.json(), msg, options);
  if (!status.ok()) {
    const auto message = status.message();
    return absl::InvalidArgumentError(
        absl::StrCat(where, " (", KindName(kind), "): ",
                     std::string(message.data(), message.size())));
  }
  return resource;
}

// A Kubernetes object, translated.
absl::StatusOr<Converted> ConvertKubernetes(const YAML::Node& doc, const std::string& api,
                                            const std::string& kind, const std::string& where) {
  std::string name;
  if (const YAML::Node meta = doc["metadata"]; meta.IsDefined() && meta.IsMap()) {
    const YAML::Node ns = meta["namespace"];
    const YAML::Node n = meta["name"];
    if (n.IsDefined() && n.IsScalar()) {
      name = absl::StrCat(" ", ns.IsDefined() && ns.IsScalar() ? ns.Scalar() : "default", "/", n.Scalar());
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
        absl::StrCat(where, ": missing kind (", kExpectedKinds, ")"));
  }
  if (!kind_node->IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", Position(kind_node->Mark()), "kind must be a string, not ",
                     NodeTypeName(*kind_node), " (", kExpectedKinds, ")"));
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
    if (kind_str == "Service" || kind_str == "EndpointSlice" || kind_str == "Workload") {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " (", kind_str, "): unsupported apiVersion ", got, " (expected ", kApiVersion,
          " for nftproxy's schema, or Kubernetes' v1 Service / discovery.k8s.io/v1 EndpointSlice)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": kind ", Quote(kind_str), " (apiVersion ", got,
        ") is not supported (nftproxy reads Kubernetes v1 Service, v1 Endpoints, "
        "discovery.k8s.io/v1 EndpointSlice and List, and its own Service, EndpointSlice and Workload)"));
  }
  Kind kind;
  if (kind_str == "Service") {
    kind = Kind::kService;
  } else if (kind_str == "EndpointSlice") {
    kind = Kind::kEndpointSlice;
  } else if (kind_str == "Workload") {
    kind = Kind::kWorkload;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": unknown kind ", Quote(kind_str), " (", kExpectedKinds, ")"));
  }
  absl::StatusOr<nftproxy::v1::Resource> r = ConvertOwn(doc, kind, where);
  if (!r.ok()) return r.status();
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

// Reads a whole file; NotFoundError naming the path if it cannot.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read ", path, ": ", std::strerror(errno ? errno : ENOENT)));
  }
  std::string data;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ",
                                            std::strerror(err ? err : EIO)));
  }
  return data;
}

bool IsManifestName(const std::string& name) {
  for (const char* ext : {".yaml", ".yml", ".json"}) {
    const size_t len = std::strlen(ext);
    if (name.size() > len && name.compare(name.size() - len, len, ext) == 0) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<ManifestDoc>> ParseManifestsImpl(
    std::string_view text, const std::string& file, std::vector<std::string>* warnings);

absl::StatusOr<std::vector<ManifestDoc>> LoadDirectory(const std::string& dir,
                                                       std::vector<std::string>* warnings) {
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  const fs::directory_iterator end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!IsManifestName(name)) continue;
    std::error_code type_ec;
    // Follows symlinks; skips dangling ones and subdirectories.
    if (!fs::is_regular_file(it->path(), type_ec)) continue;
    names.push_back(std::move(name));
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot read directory ", dir, ": ", ec.message()));
  }
  std::sort(names.begin(), names.end());

  std::vector<ManifestDoc> docs;
  std::vector<std::string> errors;
  for (const std::string& name : names) {
    const std::string file = (fs::path(dir) / name).string();
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::vector<ManifestDoc>> parsed = ParseManifestsImpl(*text, file, warnings);
    if (!parsed.ok()) {
      if (!absl::IsInvalidArgument(parsed.status())) return parsed.status();
      errors.emplace_back(parsed.status().message());
      continue;
    }
    for (ManifestDoc& d : *parsed) docs.push_back(std::move(d));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  if (docs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no manifests (*.yaml, *.yml, *.json) in directory ", dir));
  }
  return docs;
}

absl::StatusOr<std::vector<ManifestDoc>> ParseManifestsImpl(
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
    return absl::StrCat(s.metadata().namespace_().empty() ? "default" : s.metadata().namespace_(), "/",
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

}  // namespace

absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text,
                                                        const std::string& file,
                                                        std::vector<std::string>* warnings) {
  try {
    return DropShadowedEndpoints(ParseManifestsImpl(text, file, warnings), warnings);
  } catch (const std::exception& e) {
    return absl::InternalError(
        OneLine(absl::StrCat(file, ": cannot parse manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(file, ": cannot parse manifests: unknown error"));
  }
}

absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path,
                                                       std::vector<std::string>* warnings) {
  try {
    if (path == "-") {
      std::string text{std::istreambuf_iterator<char>(std::cin),
                       std::istreambuf_iterator<char>()};
      if (std::cin.bad()) {
        return absl::NotFoundError("cannot read <stdin>");
      }
      return ParseManifests(text, "<stdin>", warnings);
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) return DropShadowedEndpoints(LoadDirectory(path, warnings), warnings);
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return text.status();
    return ParseManifests(*text, path, warnings);
  } catch (const std::exception& e) {
    return absl::InternalError(
        OneLine(absl::StrCat(path, ": cannot load manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(path, ": cannot load manifests: unknown error"));
  }
}

std::string DescribeResource(const nftproxy::v1::Resource& r) {
  const char* kind = nullptr;
  const nftproxy::v1::ObjectMeta* meta = nullptr;
  switch (r.kind_case()) {
    case nftproxy::v1::Resource::kService:
      kind = "service";
      meta = &r.service().metadata();
      break;
    case nftproxy::v1::Resource::kEndpointSlice:
      kind = "endpointslice";
      meta = &r.endpoint_slice().metadata();
      break;
    case nftproxy::v1::Resource::kWorkload:
      kind = "workload";
      meta = &r.workload().metadata();
      break;
    case nftproxy::v1::Resource::KIND_NOT_SET:
      return "empty resource";
  }
  if (meta == nullptr) return "unknown resource";
  return absl::StrCat(kind, " ",
                      meta->namespace_().empty() ? "default" : meta->namespace_(),
                      "/", meta->name().empty() ? "(unnamed)" : meta->name());
}

}  // namespace nftproxy::client
