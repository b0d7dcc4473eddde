#include "client/jsonpath.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/json_text.h"

namespace nftproxy::client {
namespace {

using google::protobuf::Value;
using Node = JsonPathTemplate::Node;
using Path = JsonPathTemplate::Path;
using Step = JsonPathTemplate::Step;

absl::Status Bad(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("-o jsonpath: \"", what, "\": ", why));
}

absl::StatusOr<std::string> Unquote(absl::string_view q) {
  if (q.size() < 2 || q.back() != q.front()) return Bad(q, "unterminated string");
  std::string out;
  for (size_t i = 1; i + 1 < q.size(); ++i) {
    char c = q[i];
    if (c == '\\' && i + 2 < q.size()) {
      c = q[++i];
      switch (c) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        default: out += c;  // \\ \" \'
      }
      continue;
    }
    out += c;
  }
  return out;
}

absl::StatusOr<Path> ParsePath(absl::string_view text) {
  Path p;
  absl::string_view s = text;
  if (absl::ConsumePrefix(&s, "$")) {
    p.from_root = true;
  } else {
    absl::ConsumePrefix(&s, "@");
  }
  if (s == ".") return p;
  while (!s.empty()) {
    if (absl::StartsWith(s, "..")) return Bad(text, "recursive descent (..) is not supported");
    if (s[0] == '.') {
      s.remove_prefix(1);
      size_t n = 0;
      while (n < s.size() && s[n] != '.' && s[n] != '[') ++n;
      const absl::string_view name = s.substr(0, n);
      if (name.empty()) return Bad(text, "a field name is missing after '.'");
      Step st;
      if (name == "*") {
        st.kind = Step::Kind::kAll;
      } else {
        st.field = std::string(name);
      }
      p.steps.push_back(std::move(st));
      s.remove_prefix(n);
      continue;
    }
    if (s[0] == '[') {
      const size_t close = (s.size() > 1 && (s[1] == '\'' || s[1] == '"')) ? s.find(std::string(1, s[1]) + "]", 2)
                                                                           : s.find(']');
      if (close == absl::string_view::npos) return Bad(text, "'[' without ']'");
      const bool quoted = s.size() > 1 && (s[1] == '\'' || s[1] == '"');
      const absl::string_view inner = s.substr(1, quoted ? close : close - 1);
      s.remove_prefix(quoted ? close + 2 : close + 1);
      Step st;
      if (quoted) {
        absl::StatusOr<std::string> name = Unquote(inner);
        if (!name.ok()) return name.status();
        st.field = *name;
      } else if (inner == "*") {
        st.kind = Step::Kind::kAll;
      } else if (absl::StartsWith(inner, "?")) {
        return Bad(text, "filters ([?(...)]) are not supported");
      } else if (absl::StrContains(inner, ":") || absl::StrContains(inner, ",")) {
        return Bad(text, "slices and unions ([a:b], [a,b]) are not supported");
      } else if (absl::SimpleAtoi(inner, &st.index)) {
        st.kind = Step::Kind::kIndex;
      } else {
        return Bad(text, absl::StrCat("[", inner, "] is not an index, * or a quoted key"));
      }
      p.steps.push_back(std::move(st));
      continue;
    }
    return Bad(text, "a path starts with '.', '$' or '@' and continues with .field or [index]");
  }
  return p;
}

std::vector<const Value*> Walk(const Path& p, const Value& root, const Value& current) {
  std::vector<const Value*> cur = {p.from_root ? &root : &current};
  for (const Step& st : p.steps) {
    std::vector<const Value*> next;
    for (const Value* v : cur) {
      switch (st.kind) {
        case Step::Kind::kField:
          if (v->has_struct_value()) {
            const auto& f = v->struct_value().fields();
            if (auto it = f.find(st.field); it != f.end()) next.push_back(&it->second);
          }
          break;
        case Step::Kind::kIndex:
          if (v->has_list_value()) {
            const int n = v->list_value().values_size();
            const int i = st.index < 0 ? n + st.index : st.index;
            if (i >= 0 && i < n) next.push_back(&v->list_value().values(i));
          }
          break;
        case Step::Kind::kAll:
          if (v->has_list_value()) {
            for (const Value& e : v->list_value().values()) next.push_back(&e);
          } else if (v->has_struct_value()) {
            std::vector<std::string> keys;
            for (const auto& [k, unused] : v->struct_value().fields()) keys.push_back(k);
            std::sort(keys.begin(), keys.end());
            for (const std::string& k : keys) next.push_back(&v->struct_value().fields().at(k));
          }
          break;
      }
    }
    cur = std::move(next);
  }
  return cur;
}


std::string Format(const Value& v);

// Objects and arrays as compact JSON with keys sorted, as kubectl prints them.
std::string Compact(const Value& v) {
  switch (v.kind_case()) {
    case Value::kStringValue:
      return JsonQuote(v.string_value());
    case Value::kStructValue: {
      std::vector<std::string> keys;
      for (const auto& [k, unused] : v.struct_value().fields()) keys.push_back(k);
      std::sort(keys.begin(), keys.end());
      std::vector<std::string> parts;
      for (const std::string& k : keys) parts.push_back(JsonQuote(k) + ":" + Compact(v.struct_value().fields().at(k)));
      return "{" + absl::StrJoin(parts, ",") + "}";
    }
    case Value::kListValue: {
      std::vector<std::string> parts;
      for (const Value& e : v.list_value().values()) parts.push_back(Compact(e));
      return "[" + absl::StrJoin(parts, ",") + "]";
    }
    default:
      return Format(v);
  }
}

std::string Format(const Value& v) {
  switch (v.kind_case()) {
    case Value::kStringValue:
      return v.string_value();
    case Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case Value::kNumberValue: {
      const double d = v.number_value();
      if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) return absl::StrCat(static_cast<int64_t>(d));
      return absl::StrFormat("%g", d);
    }
    case Value::kNullValue:
      return "null";
    case Value::kStructValue:
    case Value::kListValue:
      return Compact(v);
    default:
      return "";
  }
}

struct Parser {
  absl::string_view text;
  size_t at = 0;

  // Nodes until the end of the text, or until {end} when `in_range`.
  absl::StatusOr<std::vector<Node>> Nodes(bool in_range) {
    std::vector<Node> out;
    while (at < text.size()) {
      const size_t open = text.find('{', at);
      if (open != at) {
        Node n;
        n.text = std::string(text.substr(at, open == absl::string_view::npos ? absl::string_view::npos : open - at));
        out.push_back(std::move(n));
        if (open == absl::string_view::npos) break;
        at = open;
      }
      // An action: up to the '}' that is not inside quotes.
      size_t i = at + 1;
      char quote = 0;
      for (; i < text.size(); ++i) {
        const char c = text[i];
        if (quote != 0) {
          if (c == '\\') ++i;
          else if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '}') {
          break;
        }
      }
      if (i >= text.size()) return Bad(text.substr(at), "'{' without '}'");
      const absl::string_view action = absl::StripAsciiWhitespace(text.substr(at + 1, i - at - 1));
      at = i + 1;
      if (action == "end") {
        if (!in_range) return Bad(action, "{end} without {range}");
        return out;
      }
      Node n;
      if (action.empty()) return Bad("{}", "an empty action");
      if (action[0] == '"' || action[0] == '\'') {
        absl::StatusOr<std::string> s = Unquote(action);
        if (!s.ok()) return s.status();
        n.text = *s;
      } else if (absl::StartsWith(action, "range ")) {
        n.kind = Node::Kind::kRange;
        absl::StatusOr<Path> p = ParsePath(absl::StripAsciiWhitespace(action.substr(6)));
        if (!p.ok()) return p.status();
        n.path = *p;
        absl::StatusOr<std::vector<Node>> body = Nodes(true);
        if (!body.ok()) return body.status();
        n.body = std::move(*body);
      } else {
        n.kind = Node::Kind::kPath;
        absl::StatusOr<Path> p = ParsePath(action);
        if (!p.ok()) return p.status();
        n.path = *p;
      }
      out.push_back(std::move(n));
    }
    if (in_range) return Bad(text, "{range} without {end}");
    return out;
  }
};

void Run(const std::vector<Node>& nodes, size_t begin, size_t end, const Value& root, const Value& current,
         std::string* out);

std::vector<std::string> Results(const Node& n, const Value& root, const Value& current) {
  switch (n.kind) {
    case Node::Kind::kText:
      return {n.text};
    case Node::Kind::kPath: {
      std::vector<std::string> out;
      for (const Value* v : Walk(n.path, root, current)) out.push_back(Format(*v));
      return out;
    }
    case Node::Kind::kRange: {
      std::string out;
      for (const Value* v : Walk(n.path, root, current)) {
        // A range over one list walks its elements, as kubectl's does.
        if (v->has_list_value()) {
          for (const Value& e : v->list_value().values()) Run(n.body, 0, n.body.size(), root, e, &out);
        } else {
          Run(n.body, 0, n.body.size(), root, *v, &out);
        }
      }
      return {out};
    }
  }
  return {};
}

void Run(const std::vector<Node>& nodes, size_t begin, size_t end, const Value& root, const Value& current,
         std::string* out) {
  for (size_t i = begin; i < end && i < nodes.size(); ++i) {
    absl::StrAppend(out, absl::StrJoin(Results(nodes[i], root, current), " "));
  }
}

bool StartsAtItems(const Path& p) { return !p.steps.empty() && p.steps[0].kind == Step::Kind::kField && p.steps[0].field == "items"; }

}  // namespace

absl::StatusOr<JsonPathTemplate> JsonPathTemplate::Parse(absl::string_view text) {
  Parser p{text};
  absl::StatusOr<std::vector<Node>> nodes = p.Nodes(false);
  if (!nodes.ok()) return nodes.status();
  JsonPathTemplate t;
  t.nodes_ = std::move(*nodes);
  return t;
}

std::string JsonPathTemplate::Execute(const Value& root) const { return ExecuteNodes(0, nodes_.size(), root); }

std::string JsonPathTemplate::ExecuteNodes(size_t begin, size_t end, const Value& root) const {
  std::string out;
  Run(nodes_, begin, end, root, root, &out);
  return out;
}

std::vector<std::string> JsonPathTemplate::NodeResults(size_t i, const Value& root) const {
  return Results(nodes_[i], root, root);
}

size_t JsonPathTemplate::StreamingItemsNode() const {
  size_t found = npos;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (n.kind == Node::Kind::kText || !StartsAtItems(n.path)) continue;
    if (found != npos) return npos;
    const bool walks_all = n.path.steps.size() >= 2 ? n.path.steps[1].kind == Step::Kind::kAll
                                                    : n.kind == Node::Kind::kRange;
    if (!walks_all) return npos;
    found = i;
  }
  return found;
}

}  // namespace nftproxy::client
