// `-o jsonpath=TEMPLATE`: the part of kubectl's JSONPath templates that
// scripts use, over a resource's JSON (a list is {"kind": "List", "items":
// [...]}):
//
//   text                         printed as it is
//   {.metadata.name}             a field; {.a.b.c} nested fields
//   {.spec.ports[0].port}        an element (negative: from the end)
//   {.items[*].metadata.name}    every element; results are joined by a space
//   {.metadata.labels['app.kubernetes.io/name']}   a key with dots
//   {range .items[*]}...{end}    the inner template once per element, with
//                                relative paths (.x) and @ meaning it
//   {"\n"} {'\t'}                a string (\n, \t, \\, \", \' escapes)
//   {$.kind} {@}                 the root; the current element
//
// Strings print without quotes, numbers and booleans as JSON, objects and
// arrays as compact JSON. A missing field prints nothing (kubectl's
// --allow-missing-template-keys=true). Filters ([?(...)]), slices ([1:3]),
// recursive descent (..) and unions are refused at parse time.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy::client {

class JsonPathTemplate {
 public:
  struct Step {
    enum class Kind { kField, kIndex, kAll } kind = Kind::kField;
    std::string field;
    int index = 0;
  };
  struct Path {
    bool from_root = false;  // $: the root, else the current element
    std::vector<Step> steps;
  };
  struct Node {
    enum class Kind { kText, kPath, kRange } kind = Kind::kText;
    std::string text;
    Path path;
    std::vector<Node> body;  // kRange
  };

  // InvalidArgument saying where the template is wrong.
  static absl::StatusOr<JsonPathTemplate> Parse(absl::string_view text);

  std::string Execute(const google::protobuf::Value& root) const;

  // A list printed page by page without holding every item: the one
  // top-level node whose path starts at .items, if there is exactly one and
  // it walks them with [*] (npos otherwise: the caller evaluates the whole
  // list at once).
  static constexpr size_t npos = static_cast<size_t>(-1);
  size_t StreamingItemsNode() const;
  size_t size() const { return nodes_.size(); }
  // Nodes [begin, end) against `root`.
  std::string ExecuteNodes(size_t begin, size_t end, const google::protobuf::Value& root) const;
  // Node i's results: a path gives one per value found (printed joined by a
  // space), text and range one string each.
  std::vector<std::string> NodeResults(size_t i, const google::protobuf::Value& root) const;
  bool JoinsWithSpace(size_t i) const { return nodes_[i].kind == Node::Kind::kPath; }

 private:
  std::vector<Node> nodes_;
};

}  // namespace nftproxy::client
