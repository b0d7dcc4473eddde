#include "client/manifest_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/resource_message.h"
#include "client/yaml_text.h"

namespace nftproxy::client {
namespace {

// Guards against recursive aliases (`&a [*a]`) and absurd nesting.
constexpr int kMaxDepth = 100;
// Guards against alias expansion bombs.
constexpr size_t kMaxJsonSize = size_t{64} << 20;

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

std::string Normalized(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '_' && c != '-') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

// How messages name an enum's values: Kubernetes' spellings where it has
// them (the API's names work too, as does any unambiguous spelling of them).
struct EnumWords {
  const char* full_name;
  const char* noun;
  const char* valid;
};
constexpr EnumWords kEnumWords[] = {
    {"nftproxy.v1.ServiceSpec.Type", "service type", "ClusterIP, NodePort, LoadBalancer, ExternalName"},
    {"nftproxy.v1.Protocol", "protocol", "TCP, UDP, SCTP"},
    {"nftproxy.v1.ServiceSpec.TrafficPolicy", "traffic policy", "Cluster, Local"},
    {"nftproxy.v1.ServiceSpec.SessionAffinity", "session affinity", "None, ClientIP"},
    {"nftproxy.v1.ServiceSpec.LoadBalancing", "load-balancing mode", "Random, RoundRobin, SourceHash"},
};

// The JSON token for `text` as a value of `e`, or an error's text.
bool EnumToken(const google::protobuf::EnumDescriptor* e, const std::string& text, std::string* out) {
  for (int i = 0; i < e->value_count(); ++i) {
    if (e->value(i)->name() == text) {
      AppendJsonString(text, out);
      return true;
    }
  }
  const std::string want = Normalized(text);
  for (int i = 0; i < e->value_count(); ++i) {
    const std::string& name = e->value(i)->name();
    if (!absl::EndsWith(name, "_UNSPECIFIED") && Normalized(name) == want) {
      AppendJsonString(name, out);
      return true;
    }
  }
  if (auto number = DecimalInt(text); number && number->size() < 10) {
    if (e->FindValueByNumber(std::stoi(*number)) != nullptr) {
      out->append(*number);
      return true;
    }
  }
  std::string noun = e->name();
  std::string valid;
  for (const EnumWords& w : kEnumWords) {
    if (e->full_name() == w.full_name) {
      noun = w.noun;
      valid = w.valid;
    }
  }
  if (valid.empty()) {
    for (int i = 0; i < e->value_count(); ++i) {
      if (absl::EndsWith(e->value(i)->name(), "_UNSPECIFIED")) continue;
      absl::StrAppend(&valid, valid.empty() ? "" : ", ", e->value(i)->name());
    }
  }
  *out = absl::StrCat(Quote(text), " is not a ", noun, "; valid: ", valid);
  return false;
}

// google.protobuf.Duration: "600s" in the JSON mapping; a plain number of
// seconds or Go-style "10m", "1h30m", "500ms" in a manifest.
bool DurationToken(const std::string& text, std::string* out) {
  absl::Duration d;
  double seconds = 0;
  bool ok = false;
  if ((DecimalInt(text) || Float(text)) && absl::SimpleAtod(text, &seconds) && std::abs(seconds) < 1e12) {
    d = absl::Seconds(seconds);
    ok = true;
  } else {
    ok = absl::ParseDuration(text, &d) && d != absl::InfiniteDuration() && d != -absl::InfiniteDuration() &&
         absl::AbsDuration(d) < absl::Hours(24 * 365 * 10000);
  }
  if (!ok) {
    *out = absl::StrCat(Quote(text), " is not a duration; valid: a number of seconds (600) or a number with a unit "
                                     "(600s, 10m, 1h30m)");
    return false;
  }
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  const int64_t whole = nanos / 1000000000;
  const int64_t frac = std::abs(nanos % 1000000000);
  std::string token = absl::StrCat(nanos < 0 && whole == 0 ? "-" : "", whole);
  if (frac != 0) absl::StrAppend(&token, ".", absl::StrFormat("%09d", frac));
  AppendJsonString(token + "s", out);
  return true;
}

// A whole number for an integer field, from a plain or quoted scalar.
bool IntegerToken(const google::protobuf::FieldDescriptor* f, const std::string& text, std::string* out) {
  using FD = google::protobuf::FieldDescriptor;
  std::optional<std::string> v = DecimalInt(text);
  if (!v) v = HexOrOctalInt(text);
  bool fits = false;
  std::string range;
  if (v) {
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32: {
        int32_t x;
        fits = absl::SimpleAtoi(*v, &x);
        break;
      }
      case FD::CPPTYPE_INT64: {
        int64_t x;
        fits = absl::SimpleAtoi(*v, &x);
        break;
      }
      case FD::CPPTYPE_UINT32: {
        uint32_t x;
        fits = (*v)[0] != '-' && absl::SimpleAtoi(*v, &x);
        break;
      }
      default: {
        uint64_t x;
        fits = (*v)[0] != '-' && absl::SimpleAtoi(*v, &x);
      }
    }
  }
  if (fits) {
    out->append(*v);
    return true;
  }
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      range = "from -2147483648 to 2147483647";
      break;
    case FD::CPPTYPE_INT64:
      range = "from -9223372036854775808 to 9223372036854775807";
      break;
    case FD::CPPTYPE_UINT32:
      range = "from 0 to 4294967295";
      break;
    default:
      range = "from 0 to 18446744073709551615";
  }
  *out = absl::StrCat(Quote(text), " is not a whole number ", range);
  return false;
}

// Converts one document's node tree to JSON text.
class JsonConverter {
 public:
  explicit JsonConverter(v1::Kind kind, const google::protobuf::Descriptor* desc) : kind_(kind), desc_(desc) {}

  // Converts the top-level mapping, leaving out `kind` and `apiVersion`.
  bool ConvertDocument(const YamlNode& root) { return Value(root, 0, desc_, nullptr, false, true); }

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

  // "line L, column C: spec.type: MSG".
  bool FailAt(const YAML::Mark& mark, absl::string_view msg) {
    error_ = absl::StrCat(Position(mark), PathString(), ": ", msg);
    return false;
  }

  // A scalar given for `field`: checked and spelled as protobuf's JSON
  // parser wants it, so that a bad value is reported here with its place.
  bool FieldScalar(const YamlNode& n, const google::protobuf::FieldDescriptor* field) {
    using FD = google::protobuf::FieldDescriptor;
    const std::string& text = n.Scalar();
    std::string token;
    bool ok = true;
    switch (field->cpp_type()) {
      case FD::CPPTYPE_ENUM:
        ok = EnumToken(field->enum_type(), text, &token);
        break;
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64:
        ok = IntegerToken(field, text, &token);
        break;
      case FD::CPPTYPE_STRING:
        if (n.Plain()) {
          if (auto t = PlainScalarToken(text); t && *t != "null") {
            return FailAt(n.Mark(), absl::StrCat(text, " is not a string; quote it (\"", text, "\")"));
          }
        }
        AppendJsonString(text, &token);
        break;
      case FD::CPPTYPE_MESSAGE:
        if (field->message_type()->full_name() == "google.protobuf.Duration") {
          ok = DurationToken(text, &token);
          break;
        }
        [[fallthrough]];
      default:
        return GenericScalar(n);
    }
    if (!ok) return FailAt(n.Mark(), token);
    out_.append(token);
    return true;
  }

  bool GenericScalar(const YamlNode& n) {
    if (n.Plain()) {
      if (auto token = PlainScalarToken(n.Scalar())) {
        out_.append(*token);
        return true;
      }
    }
    AppendJsonString(n.Scalar(), &out_);
    return true;
  }

  bool Fail(const YAML::Mark& mark, absl::string_view msg) {
    std::string where = PathString();
    error_ = absl::StrCat(Position(mark), msg,
                          where.empty() ? "" : absl::StrCat(" (in ", where, ")"));
    return false;
  }

  // In a Service, spec.ports[i].targetPort.
  bool AtServicePortField() const {
    return kind_ == v1::SERVICE && path_.size() == 3 &&
           path_[0] == "spec" && path_[1] == "ports" && path_[2][0] == '[';
  }

  // `desc`: the message type `n` holds (nullptr: not checked); `field`: the
  // field `n` is the value (or an item) of, if known; `map_field`: `n` is a
  // protobuf map (its keys are data, its values of type `desc`).
  bool Value(const YamlNode& n, int depth, const google::protobuf::Descriptor* desc,
             const google::protobuf::FieldDescriptor* field, bool map_field, bool top = false) {
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
      case YAML::NodeType::Scalar:
        if (field != nullptr && !map_field) return FieldScalar(n, field);
        return GenericScalar(n);
      case YAML::NodeType::Sequence: {
        out_.push_back('[');
        size_t i = 0;
        for (const YamlNode& item : n.Items()) {
          if (i > 0) out_.push_back(',');
          path_.push_back(absl::StrCat("[", i, "]"));
          if (!Value(item, depth + 1, desc, field, false)) return false;
          path_.pop_back();
          ++i;
        }
        out_.push_back(']');
        return true;
      }
      case YAML::NodeType::Map:
        return Map(n, depth, desc, field, map_field, top);
    }
    return Fail(n.Mark(), "unsupported node");
  }

  bool Map(const YamlNode& n, int depth, const google::protobuf::Descriptor* desc,
           const google::protobuf::FieldDescriptor* field, bool map_field, bool top) {
    out_.push_back('{');
    std::vector<std::string> seen;
    bool first = true;
    for (const auto& kv : n.Entries()) {
      const YamlNode& k = kv.first;
      const YamlNode& v = kv.second;
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
      const google::protobuf::FieldDescriptor* child_field = map_field ? field : nullptr;
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
        child_field = f->is_map() ? f->message_type()->map_value() : f;
      }
      if (!first) out_.push_back(',');
      first = false;
      AppendJsonString(json_key, &out_);
      out_.push_back(':');
      path_.push_back(key);
      if (!Value(v, depth + 1, child, child_field, child_map)) return false;
      path_.pop_back();
    }
    out_.push_back('}');
    return true;
  }

  v1::Kind kind_;
  const google::protobuf::Descriptor* desc_;
  std::string out_;
  std::string error_;
  std::vector<std::string> path_;
};

}  // namespace

absl::StatusOr<v1::Resource> ConvertOwnDocument(const YAML::Node& doc, const KindInfo& kind) {
  return ConvertOwnDocument(FromYamlCpp(doc), kind);
}

absl::StatusOr<v1::Resource> ConvertOwnDocument(const YamlNode& doc, const KindInfo& kind) {
  v1::Resource resource;
  google::protobuf::Message* msg = MutableBodyOf(kind, &resource);
  JsonConverter converter(kind.kind, msg->GetDescriptor());
  if (!converter.ConvertDocument(doc)) return absl::InvalidArgumentError(converter.error());
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(converter.json(), msg, options);
  if (!status.ok()) {
    const auto message = status.message();
    return absl::InvalidArgumentError(std::string(message.data(), message.size()));
  }
  return resource;
}

}  // namespace nftproxy::client
