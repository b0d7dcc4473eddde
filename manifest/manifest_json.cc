#include "manifest/manifest_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "manifest/manifest_values.h"
#include "manifest/resource_message.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using namespace manifest_values;  // NOLINT: this file's vocabulary

// Guards against recursive aliases (`&a [*a]`) and absurd nesting.
constexpr int kMaxDepth = 100;
// Guards against alias expansion bombs.
constexpr size_t kMaxJsonSize = size_t{64} << 20;

bool IsDuration(const Descriptor* d) { return d->full_name() == "google.protobuf.Duration"; }
bool IsTimestamp(const Descriptor* d) { return d->full_name() == "google.protobuf.Timestamp"; }

// ---- the direct way ---------------------------------------------------------

// Where a mapping is, for the one rule that depends on it: a Service port's
// non-numeric `targetPort` (spec.ports[i].targetPort) means targetPortName.
enum class At { kTop, kServiceSpec, kServicePorts, kServicePort, kOther };

// Fills a message from a document through reflection, reading each value as
// the JSON way does (manifest_values.h). Returns false as soon as anything is
// not plainly valid: the JSON way then reads the document again and says
// what is wrong, or decides what protobuf's JSON mapping makes of it.
class DirectFiller {
 public:
  explicit DirectFiller(v1::Kind kind) : kind_(kind) {}

  bool Document(const YamlNode& root, Message* msg) { return root.IsMap() && Fields(root, msg, At::kTop, 0); }

 private:
  // What the JSON way would write for `text`, at most: escapes take six
  // bytes, quotes and separators a few. Keeps its size limit in force here.
  bool Spend(size_t text_size) {
    budget_ += 6 * text_size + 8;
    return budget_ <= kMaxJsonSize;
  }

  // Text protobuf's JSON parser would take as it is (no NUL, no UTF-8 it
  // might check or coerce).
  static bool PlainText(const std::string& s) {
    for (char c : s) {
      if (c == '\0' || static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
  }

  static bool IsKey(const YamlNode& k) { return k.IsScalar() || k.IsNull(); }
  static const std::string& KeyText(const YamlNode& k) {
    static const std::string* const kEmpty = new std::string();
    return k.IsScalar() ? k.Scalar() : *kEmpty;
  }
  // Whether a key before `k` in mapping `n` is the same.
  static bool Repeated(const YamlNode& n, const YamlNode& k, const std::string& key) {
    for (const auto& kv : n.Entries()) {
      if (&kv.first == &k) return false;
      if (IsKey(kv.first) && KeyText(kv.first) == key) return true;
    }
    return false;
  }

  bool Fields(const YamlNode& n, Message* msg, At at, int depth) {
    if (depth > kMaxDepth || !Spend(0)) return false;
    const Descriptor* desc = msg->GetDescriptor();
    uint64_t given = 0;  // fields set by this mapping, by index
    for (const auto& kv : n.Entries()) {
      const YamlNode& k = kv.first;
      const YamlNode& v = kv.second;
      if (!IsKey(k)) return false;
      const std::string& key = KeyText(k);
      if (Repeated(n, k, key)) return false;
      if (at == At::kTop && (key == "kind" || key == "apiVersion")) continue;
      absl::string_view name = key;
      if (at == At::kServicePort && key == "targetPort" && v.IsScalar() && !LooksNumeric(v.Scalar())) {
        name = "targetPortName";
      }
      const FieldDescriptor* f = FieldByJsonName(desc, name);
      if (f == nullptr || f->index() >= 64 || !Spend(key.size())) return false;
      // A field given twice (by its JSON and its proto name), or two of a
      // oneof: protobuf's parser decides.
      if (given & (uint64_t{1} << f->index())) return false;
      given |= uint64_t{1} << f->index();
      if (const auto* oneof = f->containing_oneof()) {
        for (int i = 0; i < oneof->field_count(); ++i) {
          const int other = oneof->field(i)->index();
          if (other != f->index() && other < 64 && (given & (uint64_t{1} << other))) return false;
        }
      }
      At child = At::kOther;
      if (at == At::kTop && kind_ == v1::SERVICE && key == "spec") child = At::kServiceSpec;
      if (at == At::kServiceSpec && key == "ports") child = At::kServicePorts;
      if (!Field(v, msg, f, child, depth + 1)) return false;
    }
    return true;
  }

  bool Field(const YamlNode& v, Message* msg, const FieldDescriptor* f, At at, int depth) {
    const Reflection* r = msg->GetReflection();
    if (f->is_map()) return MapField(v, msg, f, depth);
    if (f->is_repeated()) {
      if (!v.IsSequence() || !Spend(0)) return false;
      const At item_at = at == At::kServicePorts ? At::kServicePort : At::kOther;
      for (const YamlNode& item : v.Items()) {
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          if (!Nested(item, r->AddMessage(msg, f), item_at, depth + 1)) return false;
        } else if (!item.IsScalar() || !Scalar(item, msg, f, true)) {
          return false;
        }
      }
      return true;
    }
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) return Nested(v, r->MutableMessage(msg, f), at, depth);
    return v.IsScalar() && Scalar(v, msg, f, false);
  }

  // A message's value: a mapping, or a well-known type's scalar.
  bool Nested(const YamlNode& v, Message* msg, At at, int depth) {
    const Descriptor* d = msg->GetDescriptor();
    if (d->file()->package() != "google.protobuf") return v.IsMap() && Fields(v, msg, at, depth);
    if (!v.IsScalar() || !Spend(v.Scalar().size())) return false;
    const Reflection* r = msg->GetReflection();
    int64_t seconds = 0;
    int32_t nanos = 0;
    if (IsDuration(d)) {
      int64_t total = 0;
      std::string error;
      if (!DurationValue(v.Scalar(), &total, &error)) return false;
      seconds = total / 1000000000;
      nanos = static_cast<int32_t>(total % 1000000000);
      // Beyond what the JSON mapping allows (10,000 years): its parser says so.
      if (seconds > google::protobuf::util::TimeUtil::kDurationMaxSeconds ||
          seconds < google::protobuf::util::TimeUtil::kDurationMinSeconds) {
        return false;
      }
    } else if (IsTimestamp(d)) {
      // A plain number or the like is no timestamp: the parser says so.
      if (v.Plain() && PlainScalarToken(v.Scalar())) return false;
      google::protobuf::Timestamp ts;
      if (!google::protobuf::util::TimeUtil::FromString(v.Scalar(), &ts)) return false;
      if (ts.seconds() < google::protobuf::util::TimeUtil::kTimestampMinSeconds ||
          ts.seconds() > google::protobuf::util::TimeUtil::kTimestampMaxSeconds) {
        return false;
      }
      seconds = ts.seconds();
      nanos = ts.nanos();
    } else {
      return false;
    }
    r->SetInt64(msg, d->FindFieldByNumber(1), seconds);
    r->SetInt32(msg, d->FindFieldByNumber(2), nanos);
    return true;
  }

  bool MapField(const YamlNode& v, Message* msg, const FieldDescriptor* f, int depth) {
    const FieldDescriptor* key_field = f->message_type()->map_key();
    const FieldDescriptor* value_field = f->message_type()->map_value();
    if (!v.IsMap() || key_field->type() != FieldDescriptor::TYPE_STRING || !Spend(0)) return false;
    const Reflection* r = msg->GetReflection();
    for (const auto& kv : v.Entries()) {
      if (!IsKey(kv.first)) return false;
      const std::string& key = KeyText(kv.first);
      if (!PlainText(key) || Repeated(v, kv.first, key) || !Spend(key.size())) return false;
      Message* entry = r->AddMessage(msg, f);
      entry->GetReflection()->SetString(entry, key_field, key);
      if (value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        if (!Nested(kv.second, entry->GetReflection()->MutableMessage(entry, value_field), At::kOther, depth + 1)) {
          return false;
        }
      } else if (!kv.second.IsScalar() || !Scalar(kv.second, entry, value_field, false)) {
        return false;
      }
    }
    return true;
  }

  // A scalar for field `f` of `msg` (added to it if `add`).
  bool Scalar(const YamlNode& n, Message* msg, const FieldDescriptor* f, bool add) {
    using FD = FieldDescriptor;
    const Reflection* r = msg->GetReflection();
    const std::string& text = n.Scalar();
    if (!Spend(text.size())) return false;
    Integer number;
    std::string error;
    switch (f->cpp_type()) {
      case FD::CPPTYPE_ENUM: {
        const auto* value = EnumValue(f->enum_type(), text);
        if (value == nullptr) return false;
        add ? r->AddEnumValue(msg, f, value->number()) : r->SetEnumValue(msg, f, value->number());
        return true;
      }
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64:
        if (!IntegerValue(f, text, &number, &error)) return false;
        switch (f->cpp_type()) {
          case FD::CPPTYPE_INT32:
            add ? r->AddInt32(msg, f, static_cast<int32_t>(number.signed_value))
                : r->SetInt32(msg, f, static_cast<int32_t>(number.signed_value));
            break;
          case FD::CPPTYPE_INT64:
            add ? r->AddInt64(msg, f, number.signed_value) : r->SetInt64(msg, f, number.signed_value);
            break;
          case FD::CPPTYPE_UINT32:
            add ? r->AddUInt32(msg, f, static_cast<uint32_t>(number.unsigned_value))
                : r->SetUInt32(msg, f, static_cast<uint32_t>(number.unsigned_value));
            break;
          default:
            add ? r->AddUInt64(msg, f, number.unsigned_value) : r->SetUInt64(msg, f, number.unsigned_value);
        }
        return true;
      case FD::CPPTYPE_STRING:
        if (f->type() == FD::TYPE_BYTES || !PlainText(text)) return false;
        if (n.Plain()) {
          if (auto t = PlainScalarToken(text); t && *t != "null") return false;  // "is not a string"
        }
        add ? r->AddString(msg, f, text) : r->SetString(msg, f, text);
        return true;
      case FD::CPPTYPE_BOOL: {
        // Other spellings (quoted, 1, yes) are the JSON mapping's to judge.
        if (!n.Plain()) return false;
        const bool yes = text == "true" || text == "True" || text == "TRUE";
        if (!yes && text != "false" && text != "False" && text != "FALSE") return false;
        add ? r->AddBool(msg, f, yes) : r->SetBool(msg, f, yes);
        return true;
      }
      default:
        return false;  // floating point: the JSON mapping's spellings
    }
  }

  v1::Kind kind_;
  size_t budget_ = 0;
};

// ---- the JSON way -------------------------------------------------------------

// Converts one document's node tree to JSON text.
class JsonConverter {
 public:
  explicit JsonConverter(v1::Kind kind, const Descriptor* desc) : kind_(kind), desc_(desc) {}

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
  bool FieldScalar(const YamlNode& n, const FieldDescriptor* field) {
    using FD = FieldDescriptor;
    const std::string& text = n.Scalar();
    std::string error;
    switch (field->cpp_type()) {
      case FD::CPPTYPE_ENUM: {
        if (EnumValue(field->enum_type(), text) == nullptr) return FailAt(n.Mark(), EnumError(field->enum_type(), text));
        // A number stays one (no enum value is named with digits).
        if (auto number = DecimalInt(text)) {
          out_.append(*number);
        } else {
          AppendJsonString(EnumValue(field->enum_type(), text)->name(), &out_);
        }
        return true;
      }
      case FD::CPPTYPE_INT32:
      case FD::CPPTYPE_INT64:
      case FD::CPPTYPE_UINT32:
      case FD::CPPTYPE_UINT64: {
        Integer number;
        if (!IntegerValue(field, text, &number, &error)) return FailAt(n.Mark(), error);
        out_.append(number.decimal);
        return true;
      }
      case FD::CPPTYPE_STRING:
        if (n.Plain()) {
          if (auto t = PlainScalarToken(text); t && *t != "null") {
            return FailAt(n.Mark(), absl::StrCat(text, " is not a string; quote it (\"", text, "\")"));
          }
        }
        AppendJsonString(text, &out_);
        return true;
      case FD::CPPTYPE_MESSAGE:
        if (IsDuration(field->message_type())) {
          int64_t nanos = 0;
          if (!DurationValue(text, &nanos, &error)) return FailAt(n.Mark(), error);
          AppendJsonString(DurationJson(nanos), &out_);
          return true;
        }
        [[fallthrough]];
      default:
        return GenericScalar(n);
    }
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
  bool Value(const YamlNode& n, int depth, const Descriptor* desc, const FieldDescriptor* field, bool map_field,
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

  bool Map(const YamlNode& n, int depth, const Descriptor* desc, const FieldDescriptor* field, bool map_field,
           bool top) {
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
      const Descriptor* child = map_field ? desc : nullptr;
      const FieldDescriptor* child_field = map_field ? field : nullptr;
      bool child_map = false;
      if (desc != nullptr && !map_field) {
        const FieldDescriptor* f = FieldByJsonName(desc, json_key);
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
  const Descriptor* desc_;
  std::string out_;
  std::string error_;
  std::vector<std::string> path_;
};

}  // namespace

namespace manifest_json_internal {

bool FillDirectly(const YamlNode& doc, const KindInfo& kind, v1::Resource* out) {
  return DirectFiller(kind.kind).Document(doc, MutableBodyOf(kind, out));
}

absl::StatusOr<v1::Resource> ConvertViaJson(const YamlNode& doc, const KindInfo& kind) {
  v1::Resource resource;
  Message* msg = MutableBodyOf(kind, &resource);
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

}  // namespace manifest_json_internal

absl::StatusOr<v1::Resource> ConvertOwnDocument(const YAML::Node& doc, const KindInfo& kind) {
  return ConvertOwnDocument(FromYamlCpp(doc), kind);
}

absl::StatusOr<v1::Resource> ConvertOwnDocument(const YamlNode& doc, const KindInfo& kind) {
  v1::Resource resource;
  if (manifest_json_internal::FillDirectly(doc, kind, &resource)) return resource;
  return manifest_json_internal::ConvertViaJson(doc, kind);
}

}  // namespace nftproxy::manifest
