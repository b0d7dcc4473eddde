#include "client/output.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver_util.h>
#include <yaml-cpp/yaml.h>

#include <memory>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "manifest/resource_message.h"

namespace nftproxy::client {
using manifest::BodyOf;
namespace {

// Plain YAML scalars that a YAML reader would not take as a string.
bool ReadsAsNonString(const std::string& s) {
  static const char* const kWords[] = {"~", "null", "Null", "NULL", "true", "True", "TRUE", "false",
                                       "False", "FALSE", "yes", "Yes", "YES", "no", "No", "NO",
                                       "on", "On", "ON", "off", "Off", "OFF", ".inf", ".nan", ""};
  for (const char* w : kWords) {
    if (s == w) return true;
  }
  double d;
  if (absl::SimpleAtod(s, &d)) return true;
  return absl::StartsWith(s, "0x") || absl::StartsWith(s, "0o") || absl::StartsWith(s, "+") ||
         absl::StartsWith(s, "-.") || absl::StartsWith(s, ".");
}

void Emit(YAML::Emitter& e, const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      e << YAML::BeginMap;
      for (auto it = n.begin(); it != n.end(); ++it) {
        e << YAML::Key << it->first.Scalar() << YAML::Value;
        Emit(e, it->second);
      }
      e << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      e << YAML::BeginSeq;
      for (const YAML::Node& item : n) Emit(e, item);
      e << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      // Quoted in the JSON ("!") and ambiguous in YAML: keep it a string.
      if (n.Tag() == "!" && ReadsAsNonString(n.Scalar())) {
        e << YAML::DoubleQuoted << n.Scalar();
      } else {
        e << n.Scalar();
      }
      break;
    default:
      e << YAML::Null;
  }
}

std::string JsonToYaml(const std::string& json) {
  try {
    YAML::Emitter e;
    Emit(e, YAML::Load(json));
    return std::string(e.c_str()) + "\n";
  } catch (const std::exception& ex) {
    return absl::StrCat("# cannot render as YAML: ", ex.what(), "\n", json);
  }
}

constexpr char kJsonListHead[] = "{\n  \"kind\": \"List\",\n  \"items\": [";

std::string Indent(const std::string& text, const std::string& pad) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty()) absl::StrAppend(&out, pad, line);
    out += "\n";
  }
  while (absl::EndsWith(out, "\n\n")) out.pop_back();
  return out;
}

std::string ProtocolName(v1::Protocol p) {
  return v1::Protocol_Name(p == v1::PROTOCOL_UNSPECIFIED ? v1::TCP : p);
}

std::string TypeName(v1::ServiceSpec::Type t) {
  switch (t) {
    case v1::ServiceSpec::NODE_PORT: return "NodePort";
    case v1::ServiceSpec::LOAD_BALANCER: return "LoadBalancer";
    case v1::ServiceSpec::EXTERNAL_NAME: return "ExternalName";
    default: return "ClusterIP";
  }
}

std::string OrNone(const std::vector<std::string>& items, size_t max = 0) {
  if (items.empty()) return "<none>";
  if (max == 0 || items.size() <= max) return absl::StrJoin(items, ",");
  std::vector<std::string> head(items.begin(), items.begin() + max);
  return absl::StrCat(absl::StrJoin(head, ","), " + ", items.size() - max, " more...");
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& m) {
  std::vector<std::string> kv;
  for (const auto& [k, v] : m) kv.push_back(k + "=" + v);
  std::sort(kv.begin(), kv.end());
  return OrNone(kv);
}

std::string ServicePorts(const v1::ServiceSpec& s, bool wide) {
  std::vector<std::string> ports;
  for (const v1::ServicePort& p : s.ports()) {
    std::string text = absl::StrCat(p.port());
    if (p.node_port() != 0) absl::StrAppend(&text, ":", p.node_port());
    if (wide && p.target_case() == v1::ServicePort::kTargetPort) absl::StrAppend(&text, "->", p.target_port());
    if (wide && p.target_case() == v1::ServicePort::kTargetPortName) absl::StrAppend(&text, "->", p.target_port_name());
    ports.push_back(absl::StrCat(text, "/", ProtocolName(p.protocol())));
  }
  return OrNone(ports);
}

std::string EndpointText(const v1::Endpoint& e, bool wide) {
  std::string text = absl::StrJoin(e.addresses(), "/");
  const v1::EndpointConditions& c = e.conditions();
  if (!EndpointReady(c)) absl::StrAppend(&text, c.has_serving() && c.serving() ? "(serving)" : "(not ready)");
  if (c.has_terminating() && c.terminating()) absl::StrAppend(&text, "(terminating)");
  if (wide && e.has_weight()) absl::StrAppend(&text, "*", e.weight());
  return text;
}

std::string Source(const v1::ObjectMeta& m) { return m.source().empty() ? "<manual>" : m.source(); }

std::vector<std::string> ServiceHeader(bool wide) {
  std::vector<std::string> h = {"NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"};
  if (wide) h.insert(h.end(), {"LB", "SELECTOR", "SOURCE"});
  return h;
}

std::vector<std::string> ServiceRow(const v1::Resource& r, const v1::ObjectMeta& m, const std::string& ns,
                                    const std::string& age, bool wide) {
  const v1::ServiceSpec& s = r.service().spec();
  std::vector<std::string> ext(s.external_ips().begin(), s.external_ips().end());
  ext.insert(ext.end(), s.load_balancer_ips().begin(), s.load_balancer_ips().end());
  std::vector<std::string> vips(s.cluster_ips().begin(), s.cluster_ips().end());
  if (s.type() == v1::ServiceSpec::EXTERNAL_NAME) ext = {s.external_name()};
  std::vector<std::string> row = {ns, m.name(), TypeName(s.type()), OrNone(vips), OrNone(ext), ServicePorts(s, wide), age};
  if (wide) row.insert(row.end(), {LoadBalancingName(s), Labels(s.selector()), Source(m)});
  return row;
}

std::vector<std::string> SliceHeader(bool wide) {
  std::vector<std::string> h = {"NAMESPACE", "NAME", "SERVICE", "ENDPOINTS", "PORTS", "AGE"};
  if (wide) h.insert(h.end(), {"SOURCE"});
  return h;
}

std::vector<std::string> SliceRow(const v1::Resource& r, const v1::ObjectMeta& m, const std::string& ns,
                                  const std::string& age, bool wide) {
  const v1::EndpointSlice& s = r.endpoint_slice();
  std::vector<std::string> eps, ports;
  for (const v1::Endpoint& e : s.endpoints()) eps.push_back(EndpointText(e, wide));
  for (const v1::EndpointPort& p : s.ports()) {
    ports.push_back(absl::StrCat(p.name().empty() ? "" : p.name() + ":", p.port(),
                                 wide ? "/" + ProtocolName(p.protocol()) : ""));
  }
  std::vector<std::string> row = {ns, m.name(), s.service_name(), OrNone(eps, wide ? 0 : 3), OrNone(ports), age};
  if (wide) row.push_back(Source(m));
  return row;
}

std::vector<std::string> WorkloadHeader(bool wide) {
  std::vector<std::string> h = {"NAMESPACE", "NAME", "ADDRESSES", "LABELS", "NODE", "AGE"};
  if (wide) h.insert(h.end(), {"PORTS", "SOURCE"});
  return h;
}

std::vector<std::string> WorkloadRow(const v1::Resource& r, const v1::ObjectMeta& m, const std::string& ns,
                                     const std::string& age, bool wide) {
  const v1::Workload& w = r.workload();
  std::vector<std::string> addrs(w.addresses().begin(), w.addresses().end());
  std::vector<std::string> row = {ns, m.name(), OrNone(addrs), Labels(m.labels()),
                                  w.node_name().empty() ? "<none>" : w.node_name(), age};
  if (wide) {
    std::vector<std::string> ports;
    for (const v1::EndpointPort& p : w.ports()) {
      ports.push_back(absl::StrCat(p.name().empty() ? "" : p.name() + ":", p.port(), "/", ProtocolName(p.protocol())));
    }
    row.insert(row.end(), {OrNone(ports), Source(m)});
  }
  return row;
}

// The `get` table of each kind: its header and its rows side by side, so
// that they keep the same columns.
struct Columns {
  v1::Kind kind;
  std::vector<std::string> (*header)(bool wide);
  std::vector<std::string> (*row)(const v1::Resource& r, const v1::ObjectMeta& m, const std::string& ns,
                                  const std::string& age, bool wide);
};

const Columns* ColumnsOf(v1::Kind kind) {
  static const Columns kColumns[] = {{v1::SERVICE, &ServiceHeader, &ServiceRow},
                                     {v1::ENDPOINT_SLICE, &SliceHeader, &SliceRow},
                                     {v1::WORKLOAD, &WorkloadHeader, &WorkloadRow}};
  for (const Columns& c : kColumns) {
    if (c.kind == kind) return &c;
  }
  return nullptr;
}

}  // namespace

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string MessageJson(const google::protobuf::Message& m, bool compact) {
  // Through deterministic (map keys sorted) binary, so that equal messages
  // print equal: `diff` compares the text.
  std::string bin;
  {
    google::protobuf::io::StringOutputStream sos(&bin);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&cos);
  }
  static const char kUrlPrefix[] = "type.googleapis.com";
  std::unique_ptr<google::protobuf::util::TypeResolver> resolver(google::protobuf::util::NewTypeResolverForDescriptorPool(
      kUrlPrefix, m.GetDescriptor()->file()->pool()));
  std::string printed;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = !compact;
  (void)google::protobuf::util::BinaryToJsonString(resolver.get(),
                                                   absl::StrCat(kUrlPrefix, "/", m.GetDescriptor()->full_name()), bin,
                                                   &printed, opts);
  if (compact) {
    if (printed.empty() || printed.back() != '\n') printed += "\n";
    return printed;
  }
  // protobuf indents by one space a level; kubectl (and jq) by two. A line's
  // leading spaces are its indentation only: strings never hold a raw newline.
  std::string out;
  out.reserve(printed.size() * 5 / 4);
  for (absl::string_view line : absl::StrSplit(printed, '\n', absl::SkipEmpty())) {
    const size_t depth = line.find_first_not_of(' ');
    absl::StrAppend(&out, std::string(depth == absl::string_view::npos ? 0 : 2 * depth, ' '),
                    line.substr(depth == absl::string_view::npos ? line.size() : depth), "\n");
  }
  return out;
}

std::string MessageYaml(const google::protobuf::Message& m) { return JsonToYaml(MessageJson(m, true)); }

std::string ResourceJson(const v1::Resource& r) {
  const google::protobuf::Message* message = BodyOf(r);
  // An empty resource has no kind to write; it never comes from the server.
  if (message == nullptr) return MessageJson(r);
  const char* kind = FindKind(r)->manifest;
  const std::string body = MessageJson(*message);
  if (absl::StartsWith(body, "{}")) return absl::StrCat("{\n  \"kind\": \"", kind, "\"\n}\n");
  // Put "kind" first.
  return absl::StrCat("{\n  \"kind\": \"", kind, "\",", body.substr(1));
}

std::string ResourceYaml(const v1::Resource& r) { return JsonToYaml(ResourceJson(r)); }

std::string ResourcesYaml(const std::vector<v1::Resource>& rs) {
  std::string out;
  for (size_t i = 0; i < rs.size(); ++i) absl::StrAppend(&out, i ? "---\n" : "", ResourceYaml(rs[i]));
  return out;
}

std::string ListItemJson(const v1::Resource& r) {
  std::string j = Indent(ResourceJson(r), "    ");
  while (!j.empty() && j.back() == '\n') j.pop_back();
  return j;
}

std::string ResourcesJson(const std::vector<v1::Resource>& rs) {
  std::vector<std::string> items;
  for (const v1::Resource& r : rs) items.push_back(ListItemJson(r));
  if (items.empty()) return absl::StrCat(kJsonListHead, "]\n}\n");
  return absl::StrCat(kJsonListHead, "\n", absl::StrJoin(items, ",\n"), "\n  ]\n}\n");
}

std::string LoadBalancingName(const v1::ServiceSpec& s) {
  // Nothing is programmed for an ExternalName service: no mode to show.
  if (s.type() == v1::ServiceSpec::EXTERNAL_NAME) return "<none>";
  return v1::ServiceSpec::LoadBalancing_Name(
      s.load_balancing() == v1::ServiceSpec::LOAD_BALANCING_UNSPECIFIED ? v1::ServiceSpec::RANDOM : s.load_balancing());
}


v1::Resource WithoutServerFields(const v1::Resource& r) {
  v1::Resource c = r;
  v1::ObjectMeta* m = MutableMetaOf(&c);
  if (m == nullptr) return c;
  m->clear_resource_version();
  m->clear_create_time();
  m->clear_update_time();
  if (m->namespace_().empty()) m->set_namespace_(kDefaultNamespace);
  return c;
}

std::vector<std::string> TableHeader(v1::Kind kind, bool wide) {
  const Columns* c = ColumnsOf(kind);
  return c ? c->header(wide) : std::vector<std::string>{};
}

std::vector<std::string> TableRow(const v1::Resource& r, bool wide, absl::Time now) {
  const Columns* c = ColumnsOf(KindOf(r));
  if (c == nullptr) return {};
  const v1::ObjectMeta& m = MetaOf(r);
  const std::string age = m.has_create_time() ? Age(now - ToTime(m.create_time())) : "<unknown>";
  return c->row(r, m, KeyOf(r).ns, age, wide);
}

std::string Age(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) s = 0;
  if (s < 120) return absl::StrCat(s, "s");
  const int64_t m = s / 60, h = s / 3600, days = s / 86400;
  if (m < 10) return absl::StrCat(m, "m", s % 60 == 0 ? "" : absl::StrCat(s % 60, "s"));
  if (h < 3) return absl::StrCat(m, "m");
  if (h < 8) return absl::StrCat(h, "h", m % 60 == 0 ? "" : absl::StrCat(m % 60, "m"));
  if (h < 48) return absl::StrCat(h, "h");
  if (days < 8) return absl::StrCat(days, "d", h % 24 == 0 ? "" : absl::StrCat(h % 24, "h"));
  if (days < 365 * 2) return absl::StrCat(days, "d");
  return absl::StrCat(days / 365, "y", days % 365 == 0 ? "" : absl::StrCat(days % 365, "d"));
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string RefName(const Key& key) { return absl::StrCat(KindName(key.kind), "/", key.ns, "/", key.name); }

std::string UnifiedDiff(const std::string& a, const std::string& b, const std::string& a_name,
                        const std::string& b_name) {
  if (a == b) return "";
  auto lines = [](const std::string& t) {
    std::vector<std::string> out = absl::StrSplit(t, '\n');
    if (!out.empty() && out.back().empty()) out.pop_back();
    return out;
  };
  const std::vector<std::string> x = lines(a), y = lines(b);
  const size_t n = x.size(), m = y.size();
  // lcs[i][j]: length of the longest common subsequence of x[i:] and y[j:].
  std::vector<std::vector<uint32_t>> lcs(n + 1, std::vector<uint32_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  struct Op {
    char tag;  // ' ', '-', '+'
    size_t ai, bi;  // line numbers (0-based) in a and b before this op
    std::string text;
  };
  std::vector<Op> ops;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] == y[j]) {
      ops.push_back({' ', i, j, x[i]});
      ++i, ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push_back({'-', i, j, x[i]});
      ++i;
    } else {
      ops.push_back({'+', i, j, y[j]});
      ++j;
    }
  }
  constexpr size_t kContext = 3;
  std::string out = absl::StrCat("--- ", a_name, "\n+++ ", b_name, "\n");
  size_t k = 0;
  while (k < ops.size()) {
    while (k < ops.size() && ops[k].tag == ' ') ++k;
    if (k == ops.size()) break;
    // A hunk: from kContext lines before this change to kContext lines after
    // the last change that is at most 2*kContext unchanged lines further.
    const size_t start = k >= kContext ? k - kContext : 0;
    size_t end = k;
    size_t last_change = k;
    while (end < ops.size()) {
      if (ops[end].tag != ' ') last_change = end;
      if (end - last_change > 2 * kContext) break;
      ++end;
    }
    end = std::min(ops.size(), last_change + kContext + 1);
    size_t a_count = 0, b_count = 0;
    for (size_t h = start; h < end; ++h) {
      if (ops[h].tag != '+') ++a_count;
      if (ops[h].tag != '-') ++b_count;
    }
    const size_t a_start = ops[start].ai + (a_count ? 1 : 0);
    const size_t b_start = ops[start].bi + (b_count ? 1 : 0);
    absl::StrAppend(&out, "@@ -", a_start, ",", a_count, " +", b_start, ",", b_count, " @@\n");
    for (size_t h = start; h < end; ++h) absl::StrAppend(&out, std::string(1, ops[h].tag), ops[h].text, "\n");
    k = end;
  }
  return out;
}

namespace {

struct Block {
  std::string kind;  // chain, map, set
  std::string name;
  std::vector<std::string> lines;  // including the opening and closing lines
};

// The top-level blocks of a table in `nft list` text.
std::vector<Block> Blocks(const std::string& ruleset) {
  std::vector<Block> blocks;
  Block cur;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(ruleset, '\n'))) {
    const absl::string_view t = absl::StripAsciiWhitespace(line);
    if (cur.name.empty()) {
      for (const char* kind : {"chain ", "map ", "set "}) {
        if (absl::StartsWith(t, kind) && absl::EndsWith(t, "{")) {
          cur.kind = std::string(absl::StripSuffix(kind, " "));
          std::string n(absl::StripAsciiWhitespace(t.substr(strlen(kind), t.size() - strlen(kind) - 1)));
          if (n.size() >= 2 && n.front() == '"' && n.back() == '"') n = n.substr(1, n.size() - 2);
          cur.name = n;
          cur.lines.push_back(line);
          break;
        }
      }
      continue;
    }
    cur.lines.push_back(line);
    if (t == "}") {
      blocks.push_back(std::move(cur));
      cur = Block();
    }
  }
  return blocks;
}

// The elements (or rules) of a block, one string each.
std::vector<std::string> Entries(const Block& b) {
  std::vector<std::string> out;
  const std::string joined = absl::StrJoin(b.lines.begin() + 1, b.lines.end(), "\n");
  for (absl::string_view part : absl::StrSplit(joined, absl::ByAnyChar(",{}\n"))) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::StartsWith(part, "elements =")) part = absl::StripAsciiWhitespace(part.substr(10));
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

bool ParseNumber(absl::string_view s, uint64_t* v) {
  if (absl::StartsWith(s, "0x")) return absl::SimpleHexAtoi(s.substr(2), v);
  return absl::SimpleAtoi(s, v);
}

// The token after `word ` in `text`.
absl::string_view After(absl::string_view text, absl::string_view word) {
  size_t at = text.find(absl::StrCat(" ", word, " "));
  if (at == absl::string_view::npos) return "";
  absl::string_view rest = text.substr(at + word.size() + 2);
  return rest.substr(0, rest.find(' '));
}

// A key of an interval map: "0x80000000/21", "5-9" or "7" as [lo, hi].
bool KeyRange(absl::string_view key, uint64_t* lo, uint64_t* hi) {
  if (size_t slash = key.find('/'); slash != absl::string_view::npos) {
    uint64_t len = 0;
    if (!ParseNumber(key.substr(0, slash), lo) || !absl::SimpleAtoi(key.substr(slash + 1), &len) || len > 32) return false;
    *hi = *lo + ((uint64_t{1} << (32 - len)) - 1);
    return true;
  }
  if (size_t dash = key.find('-'); dash != absl::string_view::npos) {
    return ParseNumber(key.substr(0, dash), lo) && ParseNumber(key.substr(dash + 1), hi);
  }
  if (!ParseNumber(key, lo)) return false;
  *hi = *lo;
  return true;
}

}  // namespace

std::string RulesetFor(const std::string& ruleset, const std::string& ns, const std::string& name) {
  const std::string needle = absl::StrCat("/", ns, "/", name, "/");
  const std::vector<Block> blocks = Blocks(ruleset);
  auto find = [&](const std::string& n) -> const Block* {
    for (const Block& b : blocks) {
      if (b.name == n) return &b;
    }
    return nullptr;
  };
  std::string owned;   // the service's own chains
  std::string refs;    // elements and rules elsewhere that point at them
  std::string picked;  // backends its chains pick from shared maps
  for (const Block& b : blocks) {
    if (absl::StrContains(b.name, needle)) {
      for (const std::string& l : b.lines) absl::StrAppend(&owned, l, "\n");
      // A chain that picks a mark in [offset, offset + mod) and jumps to a
      // chain that maps marks to backends: show those map elements.
      for (const std::string& rule : Entries(b)) {
        uint64_t mod = 0, offset = 0;
        const std::string target(After(rule, "goto"));
        if (!absl::SimpleAtoi(After(rule, "mod"), &mod) || !ParseNumber(After(rule, "offset"), &offset) || mod == 0) continue;
        const Block* pick = find(target);
        if (pick == nullptr) continue;
        for (const std::string& line : pick->lines) {
          size_t at = line.find("map @");
          if (at == std::string::npos) continue;
          const std::string map_name = line.substr(at + 5, line.find_first_of(" \t", at + 5) - (at + 5));
          const Block* map = find(map_name);
          if (map == nullptr || absl::StrContains(picked, absl::StrCat(map_name, " (", b.name, ")"))) continue;
          std::vector<std::string> hits;
          for (const std::string& e : Entries(*map)) {
            uint64_t lo = 0, hi = 0;
            const size_t colon = e.find(" : ");
            if (colon == std::string::npos || !KeyRange(e.substr(0, colon), &lo, &hi)) continue;
            if (lo < offset + mod && hi >= offset) hits.push_back(e);
          }
          if (hits.empty()) continue;
          absl::StrAppend(&picked, "\t", map->kind, " ", map_name, " (", b.name, "):\n");
          for (const std::string& h : hits) absl::StrAppend(&picked, "\t\t", h, "\n");
        }
      }
      continue;
    }
    std::vector<std::string> hits;
    for (const std::string& e : Entries(b)) {
      // An object map's element names the service's counter; it is shown
      // with the tickets its chains pick, above.
      if (absl::StrContains(e, needle) && !absl::StrContains(e, " : \"")) hits.push_back(e);
    }
    if (!hits.empty()) {
      absl::StrAppend(&refs, "\t", b.kind, " ", b.name, ":\n");
      for (const std::string& h : hits) absl::StrAppend(&refs, "\t\t", h, "\n");
    }
  }
  return refs + owned + picked;
}

}  // namespace nftproxy::client
