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

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

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

// Converts one document's node tree to JSON text.
class JsonConverter {
 public:
  explicit JsonConverter(Kind kind) : kind_(kind) {}

  // Converts the top-level mapping, leaving out `kind` and `apiVersion`.
  bool ConvertDocument(const YAML::Node& root) { return Value(root, 0, true); }

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

  bool Value(const YAML::Node& n, int depth, bool top = false) {
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
          if (!Value(item, depth + 1)) return false;
          path_.pop_back();
          ++i;
        }
        out_.push_back(']');
        return true;
      }
      case YAML::NodeType::Map:
        return Map(n, depth, top);
    }
    return Fail(n.Mark(), "unsupported node");
  }

  bool Map(const YAML::Node& n, int depth, bool top) {
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
      if (!first) out_.push_back(',');
      first = false;
      AppendJsonString(json_key, &out_);
      out_.push_back(':');
      path_.push_back(key);
      if (!Value(v, depth + 1)) return false;
      path_.pop_back();
    }
    out_.push_back('}');
    return true;
  }

  Kind kind_;
  std::string out_;
  std::string error_;
  std::vector<std::string> path_;
};

// Converts one non-empty document. On failure returns the error text that
// follows "FILE: document N".
absl::StatusOr<nftproxy::v1::Resource> ConvertDocument(const YAML::Node& doc) {
  if (!doc.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(": ", Position(doc.Mark()),
                     "expected a mapping with a \"kind\", got ",
                     NodeTypeName(doc)));
  }
  std::optional<YAML::Node> kind_node;
  std::optional<YAML::Node> api_node;
  for (const auto& kv : doc) {
    if (!kv.first.IsScalar()) continue;
    const std::string& key = kv.first.Scalar();
    // emplace, not assignment: assigning to a YAML::Node changes the node.
    if (key == "kind" && !kind_node) {
      kind_node.emplace(kv.second);
    } else if (key == "apiVersion" && !api_node) {
      api_node.emplace(kv.second);
    }
  }
  if (!kind_node || kind_node->IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(": missing kind (", kExpectedKinds, ")"));
  }
  if (!kind_node->IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat(": ", Position(kind_node->Mark()), "kind must be a string, not ",
                     NodeTypeName(*kind_node), " (", kExpectedKinds, ")"));
  }
  const std::string& kind_str = kind_node->Scalar();
  Kind kind;
  if (kind_str == "Service") {
    kind = Kind::kService;
  } else if (kind_str == "EndpointSlice") {
    kind = Kind::kEndpointSlice;
  } else if (kind_str == "Workload") {
    kind = Kind::kWorkload;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        ": unknown kind ", Quote(kind_str), " (", kExpectedKinds, ")"));
  }
  if (api_node && !api_node->IsNull() &&
      !(api_node->IsScalar() && api_node->Scalar() == kApiVersion)) {
    std::string got =
        api_node->IsScalar() ? Quote(api_node->Scalar()) : NodeTypeName(*api_node);
    return absl::InvalidArgumentError(absl::StrCat(
        " (", KindName(kind), "): unsupported apiVersion ", got, " (expected ",
        kApiVersion, ")"));
  }

  JsonConverter converter(kind);
  if (!converter.ConvertDocument(doc)) {
    return absl::InvalidArgumentError(
        absl::StrCat(" (", KindName(kind), "): ", converter.error()));
  }

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
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status =
      google::protobuf::util::JsonStringToMessage(converter.json(), msg, options);
  if (!status.ok()) {
    const auto message = status.message();
    return absl::InvalidArgumentError(
        absl::StrCat(" (", KindName(kind), "): ",
                     std::string(message.data(), message.size())));
  }
  return resource;
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

absl::StatusOr<std::vector<ManifestDoc>> LoadDirectory(const std::string& dir) {
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
    absl::StatusOr<std::vector<ManifestDoc>> parsed = ParseManifests(*text, file);
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
    std::string_view text, const std::string& file) {
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
    absl::StatusOr<nftproxy::v1::Resource> resource;
    try {
      resource = ConvertDocument(node);
    } catch (const YAML::Exception& e) {
      resource = absl::InvalidArgumentError(
          absl::StrCat(": ", Position(e.mark), e.msg));
    }
    if (!resource.ok()) {
      if (errors.size() < kMaxErrors) {
        errors.push_back(OneLine(absl::StrCat(file, ": document ", index,
                                              resource.status().message())));
      } else {
        ++suppressed;
      }
      continue;
    }
    ManifestDoc doc;
    doc.file = file;
    doc.index = index;
    doc.resource = std::move(*resource);
    docs.push_back(std::move(doc));
  }
  if (!errors.empty()) return JoinErrors(errors, suppressed);
  return docs;
}

}  // namespace

absl::StatusOr<std::vector<ManifestDoc>> ParseManifests(std::string_view text,
                                                        const std::string& file) {
  try {
    return ParseManifestsImpl(text, file);
  } catch (const std::exception& e) {
    return absl::InternalError(
        OneLine(absl::StrCat(file, ": cannot parse manifests: ", e.what())));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(file, ": cannot parse manifests: unknown error"));
  }
}

absl::StatusOr<std::vector<ManifestDoc>> LoadManifests(const std::string& path) {
  try {
    if (path == "-") {
      std::string text{std::istreambuf_iterator<char>(std::cin),
                       std::istreambuf_iterator<char>()};
      if (std::cin.bad()) {
        return absl::NotFoundError("cannot read <stdin>");
      }
      return ParseManifests(text, "<stdin>");
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) return LoadDirectory(path);
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) return text.status();
    return ParseManifests(*text, path);
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
