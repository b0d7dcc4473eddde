// YAML for the manifest readers: how a problem is spelled (every error and
// warning line names a place and quotes what the user wrote), the small tree
// a document is read into, and a fast reader for the YAML that manifests are
// written in.
//
// Why a tree and a reader of our own: yaml-cpp parses about 2 MB/s and its
// node graph costs far more memory than the text; a 50 MB manifest took 35 s
// and 4 GB. The fast reader handles the common subset (block and flow
// collections, plain and quoted one-line scalars, literal and folded block
// scalars, comments) and says "unsupported" for anything else (anchors, tags,
// multi-line plain scalars, syntax errors...): that document is then read by
// yaml-cpp, which also words the syntax errors. Both feed the same
// YAML::EventHandler, so the rest of the code sees one kind of tree.
#pragma once

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace nftproxy::manifest {

// "line L, column C: ", or "" when the parser gave no position.
std::string Position(const YAML::Mark& mark);
// A user-supplied string, quoted and escaped, so that odd bytes stay visible.
std::string Quote(absl::string_view s);
// `s` with line breaks turned into spaces: a message is one line per problem.
std::string OneLine(std::string s);
// "a mapping", "a sequence", "a scalar", "null".
const char* NodeTypeName(const YAML::Node& n);

// One document, or one item of a List, with where each node was written.
class YamlNode {
 public:
  struct Entry {
    const YamlNode& first;
    const YamlNode& second;
  };
  class EntryIterator {
   public:
    explicit EntryIterator(const YamlNode* at) : at_(at) {}
    Entry operator*() const { return Entry{at_[0], at_[1]}; }
    EntryIterator& operator++() {
      at_ += 2;
      return *this;
    }
    bool operator!=(const EntryIterator& o) const { return at_ != o.at_; }

   private:
    const YamlNode* at_;
  };
  struct EntryRange {
    const YamlNode* first;
    const YamlNode* last;
    EntryIterator begin() const { return EntryIterator(first); }
    EntryIterator end() const { return EntryIterator(last); }
  };

  YamlNode() = default;
  YamlNode(YAML::NodeType::value type, const YAML::Mark& mark) : type_(type), mark_(mark) {}

  YAML::NodeType::value Type() const { return type_; }
  bool IsDefined() const { return type_ != YAML::NodeType::Undefined; }
  bool IsNull() const { return type_ == YAML::NodeType::Null; }
  bool IsScalar() const { return type_ == YAML::NodeType::Scalar; }
  bool IsSequence() const { return type_ == YAML::NodeType::Sequence; }
  bool IsMap() const { return type_ == YAML::NodeType::Map; }
  const std::string& Scalar() const { return text_; }
  // False for a quoted or block scalar: `"80"` is a string, `80` may not be.
  bool Plain() const { return plain_; }
  YAML::Mark Mark() const { return mark_; }

  // A sequence's items.
  const std::vector<YamlNode>& Items() const { return kids_; }
  // A mapping's keys and values, in the order written.
  EntryRange Entries() const {
    const size_t n = type_ == YAML::NodeType::Map ? kids_.size() & ~size_t{1} : 0;
    return EntryRange{kids_.data(), kids_.data() + n};
  }
  // The value of the first scalar key `key` of a mapping; undefined if none.
  const YamlNode& Get(absl::string_view key) const;

  void SetScalar(std::string text, bool plain) {
    text_ = std::move(text);
    plain_ = plain;
  }
  // Items of a sequence; keys and values in turn of a mapping.
  std::vector<YamlNode>& MutableKids() { return kids_; }
  // Nodes in this subtree (to bound what copying aliases may cost).
  size_t CountNodes() const;

 private:
  YAML::NodeType::value type_ = YAML::NodeType::Undefined;
  bool plain_ = true;
  YAML::Mark mark_ = YAML::Mark::null_mark();
  std::string text_;
  std::vector<YamlNode> kids_;
};

const char* NodeTypeName(const YamlNode& n);
// The same tree, from a yaml-cpp node (for callers holding one).
YamlNode FromYamlCpp(const YAML::Node& n);

// The documents of a YAML stream, found by their c-forbidden marker lines
// (`---` or `...` at column 0), which end any node however it is written.
struct YamlDocumentText {
  absl::string_view text;  // from its `---` line (if any) to the next marker
  int first_line = 0;      // 0-based line of `text` in the whole input
  size_t offset = 0;       // byte offset of `text` in the whole input
};
// Calls `each` for every document, in order; a stretch before the first
// `---` or after a `...` counts only if it holds more than comments (as in
// yaml-cpp). Returns false at once if `each` does.
template <typename F>
bool ForEachYamlDocument(absl::string_view input, F each);

// Reads one document (as found above) and reports it to `handler` with
// yaml-cpp's events, marks counted in the whole input. Returns false, with
// no event or only some reported, for anything outside the subset the fast
// reader handles: the caller then re-reads the document with yaml-cpp.
// Scalars are tagged as yaml-cpp tags them: "?" plain, "!" otherwise.
bool FastReadYamlDocument(const YamlDocumentText& doc, YAML::EventHandler* handler);

// ---- implementation of the template ---------------------------------------

namespace yaml_internal {
// Whether line `line` (without its newline) is a document marker; sets
// `*start` for `---`.
bool IsMarker(absl::string_view line, bool* start);
bool HasContent(absl::string_view text);
}  // namespace yaml_internal

template <typename F>
bool ForEachYamlDocument(absl::string_view input, F each) {
  size_t doc_begin = 0;
  int doc_line = 0;
  bool explicit_start = false;
  auto emit = [&](size_t end) {
    YamlDocumentText d{input.substr(doc_begin, end - doc_begin), doc_line, doc_begin};
    if (!explicit_start && !yaml_internal::HasContent(d.text)) return true;
    return static_cast<bool>(each(d));
  };
  size_t pos = 0;
  int line = 0;
  while (pos < input.size()) {
    size_t nl = input.find('\n', pos);
    const size_t line_end = nl == absl::string_view::npos ? input.size() : nl;
    bool start = false;
    if ((input[pos] == '-' || input[pos] == '.') &&
        yaml_internal::IsMarker(input.substr(pos, line_end - pos), &start)) {
      if (!emit(pos)) return false;
      if (start) {
        doc_begin = pos;
        doc_line = line;
        explicit_start = true;
      } else {
        doc_begin = nl == absl::string_view::npos ? input.size() : nl + 1;
        doc_line = line + 1;
        explicit_start = false;
      }
    }
    if (nl == absl::string_view::npos) break;
    pos = nl + 1;
    ++line;
  }
  if (doc_begin < input.size() || explicit_start) return emit(input.size());
  return true;
}

}  // namespace nftproxy::manifest
