#include "manifest/manifest_values.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "manifest/yaml_text.h"

namespace nftproxy::manifest::manifest_values {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool AllDigits(absl::string_view s, size_t from) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i) {
    if (!IsDigit(s[i])) return false;
  }
  return true;
}


// Equal once '_' and '-' are dropped and case is ignored ("ClusterIP" and
// "CLUSTER_IP"); compared in place, as it runs for every enum value read.
bool NormalizedEqual(absl::string_view a, absl::string_view b) {
  size_t i = 0;
  size_t j = 0;
  while (true) {
    while (i < a.size() && (a[i] == '_' || a[i] == '-')) ++i;
    while (j < b.size() && (b[j] == '_' || b[j] == '-')) ++j;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[j]))) {
      return false;
    }
    ++i;
    ++j;
  }
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

}  // namespace

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

namespace {
// Whether `s` may be one of PlainScalarToken's tokens, by its first
// character: most strings (names, addresses) are not, and are told at once.
bool MayBeToken(const std::string& s) {
  if (s.empty()) return false;
  switch (s[0]) {
    case '~': case 'n': case 'N': case 't': case 'T': case 'f': case 'F': case '.': case '+': case '-':
      return true;
    default:
      return IsDigit(s[0]);
  }
}
}  // namespace

std::optional<std::string> PlainScalarToken(const std::string& s) {
  if (!MayBeToken(s)) return std::nullopt;
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
  return MayBeToken(s) && (DecimalInt(s) || HexOrOctalInt(s) || Float(s));
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

std::string Suggestion(const google::protobuf::Descriptor* desc, absl::string_view key) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 4) + 1;
  for (int i = 0; i < desc->field_count(); ++i) {
    const std::string& name = desc->field(i)->json_name();
    const size_t d = EditDistance(key, name, /*fold_case=*/true);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best.empty() ? "" : absl::StrCat("; did you mean \"", best, "\"?");
}

const google::protobuf::FieldDescriptor* FieldByJsonName(const google::protobuf::Descriptor* desc,
                                                         absl::string_view name) {
  for (int i = 0; i < desc->field_count(); ++i) {
    if (desc->field(i)->json_name() == name) return desc->field(i);
  }
  return desc->FindFieldByName(std::string(name));
}

const google::protobuf::Descriptor* CheckedType(const google::protobuf::FieldDescriptor* f) {
  if (f->is_map()) f = f->message_type()->map_value();
  if (f->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE) return nullptr;
  if (f->message_type()->file()->package() == "google.protobuf") return nullptr;
  return f->message_type();
}

const google::protobuf::EnumValueDescriptor* EnumValue(const google::protobuf::EnumDescriptor* e,
                                                       const std::string& text) {
  for (int i = 0; i < e->value_count(); ++i) {
    if (e->value(i)->name() == text) return e->value(i);
  }
  for (int i = 0; i < e->value_count(); ++i) {
    const std::string& name = e->value(i)->name();
    if (!absl::EndsWith(name, "_UNSPECIFIED") && NormalizedEqual(name, text)) return e->value(i);
  }
  if (auto number = DecimalInt(text); number && number->size() < 10) {
    return e->FindValueByNumber(std::stoi(*number));
  }
  return nullptr;
}

std::string EnumError(const google::protobuf::EnumDescriptor* e, const std::string& text) {
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
  return absl::StrCat(Quote(text), " is not a ", noun, "; valid: ", valid);
}

bool DurationValue(const std::string& text, int64_t* nanos, std::string* error) {
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
    *error = absl::StrCat(Quote(text), " is not a duration; valid: a number of seconds (600) or a number with a unit "
                                       "(600s, 10m, 1h30m)");
    return false;
  }
  *nanos = absl::ToInt64Nanoseconds(d);
  return true;
}

std::string DurationJson(int64_t nanos) {
  const int64_t whole = nanos / 1000000000;
  const int64_t frac = std::abs(nanos % 1000000000);
  std::string token = absl::StrCat(nanos < 0 && whole == 0 ? "-" : "", whole);
  if (frac != 0) absl::StrAppend(&token, ".", absl::StrFormat("%09d", frac));
  return token + "s";
}

bool IntegerValue(const google::protobuf::FieldDescriptor* f, const std::string& text, Integer* out,
                  std::string* error) {
  using FD = google::protobuf::FieldDescriptor;
  std::optional<std::string> v = DecimalInt(text);
  if (!v) v = HexOrOctalInt(text);
  bool fits = false;
  if (v) {
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32: {
        int32_t x = 0;
        fits = absl::SimpleAtoi(*v, &x);
        out->signed_value = x;
        break;
      }
      case FD::CPPTYPE_INT64:
        fits = absl::SimpleAtoi(*v, &out->signed_value);
        break;
      case FD::CPPTYPE_UINT32: {
        uint32_t x = 0;
        fits = (*v)[0] != '-' && absl::SimpleAtoi(*v, &x);
        out->unsigned_value = x;
        break;
      }
      default:
        fits = (*v)[0] != '-' && absl::SimpleAtoi(*v, &out->unsigned_value);
    }
  }
  if (fits) {
    out->decimal = *std::move(v);
    return true;
  }
  std::string range;
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
  *error = absl::StrCat(Quote(text), " is not a whole number ", range);
  return false;
}

}  // namespace nftproxy::manifest::manifest_values
