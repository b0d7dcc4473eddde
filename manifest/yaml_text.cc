// Over 600 lines: the fast YAML reader is one state machine, best read whole.
#include "manifest/yaml_text.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace nftproxy::manifest {

std::string Position(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

namespace {

const char* TypeName(YAML::NodeType::value t) {
  switch (t) {
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

}  // namespace

const char* NodeTypeName(const YAML::Node& n) { return TypeName(n.Type()); }
const char* NodeTypeName(const YamlNode& n) { return TypeName(n.Type()); }

const YamlNode& YamlNode::Get(absl::string_view key) const {
  static const YamlNode* const kUndefined = new YamlNode();
  for (const Entry e : Entries()) {
    if (e.first.IsScalar() && e.first.Scalar() == key) return e.second;
  }
  return *kUndefined;
}

size_t YamlNode::CountNodes() const {
  size_t n = 1;
  for (const YamlNode& k : kids_) n += k.CountNodes();
  return n;
}

YamlNode FromYamlCpp(const YAML::Node& n) {
  YamlNode out(n.Type(), n.IsDefined() ? n.Mark() : YAML::Mark::null_mark());
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      out.SetScalar(n.Scalar(), n.Tag() == "?");
      break;
    case YAML::NodeType::Sequence:
      for (const YAML::Node& item : n) out.MutableKids().push_back(FromYamlCpp(item));
      break;
    case YAML::NodeType::Map:
      for (const auto& kv : n) {
        out.MutableKids().push_back(FromYamlCpp(kv.first));
        out.MutableKids().push_back(FromYamlCpp(kv.second));
      }
      break;
    default:
      break;
  }
  return out;
}

namespace yaml_internal {

bool IsMarker(absl::string_view line, bool* start) {
  if (line.size() < 3) return false;
  const absl::string_view head = line.substr(0, 3);
  if (head != "---" && head != "...") return false;
  if (line.size() > 3 && line[3] != ' ' && line[3] != '\t' && line[3] != '\r') return false;
  *start = head == "---";
  return true;
}

bool HasContent(absl::string_view text) {
  bool line_start = true;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      line_start = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') continue;
    if (c == '#' && line_start) {
      i = text.find('\n', i);
      if (i == absl::string_view::npos) return false;
      --i;
      continue;
    }
    return true;
  }
  return false;
}

}  // namespace yaml_internal

namespace {

// Thrown inside the fast reader for anything it leaves to yaml-cpp.
struct Unsupported {};

constexpr int kMaxFlowDepth = 100;

bool IsNullWord(absl::string_view s) { return s == "~" || s == "null" || s == "Null" || s == "NULL"; }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The reader keeps `pos_` in `s_` and the line it is on. Block structure is
// read line by line: every Block* function starts at the first character of
// its node and returns with `pos_` at the start of the first line after it
// that holds content (or at the end).
class FastReader {
 public:
  FastReader(const YamlDocumentText& doc, YAML::EventHandler* h)
      : s_(doc.text), h_(h), line_(doc.first_line), base_(doc.offset) {}

  void Read() {
    CheckCharacters();
    h_->OnDocumentStart(MarkAt(0));
    if (s_.substr(0, 3) == "---") {
      pos_ = 3;
      EndOfLine();
    }
    SkipBlankLines();
    if (AtEnd()) {
      h_->OnNull(MarkAt(pos_), YAML::NullAnchor);
    } else {
      const int indent = LineIndent();
      Node(line_start_ + indent, -1);
      SkipBlankLines();
      if (!AtEnd()) throw Unsupported();
    }
    h_->OnDocumentEnd();
  }

 private:
  // Text other than printable ASCII, tabs, LF or CR LF line breaks and valid
  // UTF-8 (no C0 or C1 controls, NUL, DEL, byte order mark, Unicode line or
  // paragraph separator, or noncharacter U+FFFE/U+FFFF) is left to yaml-cpp,
  // which decodes and checks it (found by manifest_fuzz: the fast reader
  // passed such bytes through where yaml-cpp reads something else).
  void CheckCharacters() const {
    for (size_t i = 0; i < s_.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(s_[i]);
      if (c >= 0x20 && c < 0x7F) continue;
      if (c == '\t' || c == '\n') continue;
      if (c == '\r') {
        if (i + 1 < s_.size() && s_[i + 1] == '\n') continue;
        throw Unsupported();  // a CR alone: yaml-cpp and YAML differ on what it is
      }
      if (c < 0xC2 || c > 0xF4) throw Unsupported();  // controls, DEL, stray or overlong bytes
      const int more = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
      if (i + more >= s_.size()) throw Unsupported();  // a cut sequence
      uint32_t cp = c & (0x3F >> more);
      for (int k = 1; k <= more; ++k) {
        const unsigned char d = static_cast<unsigned char>(s_[i + k]);
        if ((d & 0xC0) != 0x80) throw Unsupported();
        cp = (cp << 6) | (d & 0x3F);
      }
      const uint32_t min = more == 1 ? 0x80 : more == 2 ? 0x800 : 0x10000;
      if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp <= 0x9F || cp == 0x2028 ||
          cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) {
        throw Unsupported();
      }
      i += more;
    }
  }

  bool AtEnd() const { return pos_ >= s_.size(); }
  char At(size_t p) const { return p < s_.size() ? s_[p] : '\n'; }
  static bool Blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }
  bool EndsToken(size_t p) const { return p >= s_.size() || Blank(s_[p]) || s_[p] == '\n'; }

  YAML::Mark MarkAt(size_t p) const {
    YAML::Mark m;
    m.pos = static_cast<int>(base_ + p);
    m.line = line_;
    m.column = static_cast<int>(p - line_start_);
    return m;
  }

  // Where yaml-cpp puts a node left empty at the end of the text: column 0
  // of the line the text ends on (found by manifest_fuzz).
  YAML::Mark EndMark() const {
    YAML::Mark m = MarkAt(s_.size());
    m.column = 0;
    return m;
  }

  void NextLine() {
    const size_t nl = s_.find('\n', pos_);
    pos_ = nl == absl::string_view::npos ? s_.size() : nl + 1;
    if (nl != absl::string_view::npos) ++line_;
    line_start_ = pos_;
  }

  // From `pos_`: blanks, then a comment or the end of the line. Moves to the
  // next line.
  void EndOfLine() {
    const size_t from = pos_;
    while (pos_ < s_.size() && Blank(s_[pos_])) ++pos_;
    if (pos_ < s_.size() && s_[pos_] != '\n' && !(s_[pos_] == '#' && pos_ > from)) throw Unsupported();
    NextLine();
  }

  // Skips blank and comment-only lines; `pos_` at a line start.
  void SkipBlankLines() {
    while (!AtEnd()) {
      size_t p = pos_;
      while (p < s_.size() && Blank(s_[p])) {
        // yaml-cpp refuses some tabs at the start of a blank or comment
        // line ("illegal tab when looking for indentation"), depending on
        // the indentation around; it decides (found by manifest_fuzz).
        if (s_[p] == '\t') throw Unsupported();
        ++p;
      }
      if (p < s_.size() && s_[p] != '\n' && s_[p] != '#') return;
      NextLine();
    }
  }

  // The current line's indentation (spaces); a tab in it is left to yaml-cpp.
  int LineIndent() const {
    size_t p = line_start_;
    while (p < s_.size() && s_[p] == ' ') ++p;
    if (p < s_.size() && s_[p] == '\t') throw Unsupported();
    return static_cast<int>(p - line_start_);
  }

  // A node starting at `p` on the current line; `parent` is the indentation
  // of the enclosing block collection (-1 at the top).
  void Node(size_t p, int parent) {
    pos_ = p;
    const int column = static_cast<int>(p - line_start_);
    if (s_[p] == '-' && EndsToken(p + 1)) return BlockSequence(column);
    size_t after = 0;
    if (KeyAt(p, nullptr, &after)) return BlockMapping(p, column);
    InlineValue(p, parent);
  }

  // Whether a mapping key starts at `p` (a plain or quoted scalar followed by
  // ": " or ":" at the end of the line). Emits the key when `emit` is set;
  // `*after` is just past the colon.
  bool KeyAt(size_t p, YAML::EventHandler* emit, size_t* after) {
    const char c = s_[p];
    if (c == '"' || c == '\'') {
      const size_t saved = pos_;
      pos_ = p;
      std::string text = c == '"' ? DoubleQuoted() : SingleQuoted();
      size_t q = pos_;
      pos_ = saved;
      while (q < s_.size() && Blank(s_[q])) ++q;
      if (At(q) != ':' || !EndsToken(q + 1)) return false;
      if (emit != nullptr) emit->OnScalar(MarkAt(p), "!", YAML::NullAnchor, text);
      *after = q + 1;
      return true;
    }
    if (c == '[' || c == '{' || c == '#' || c == '&' || c == '*' || c == '!' || c == '|' || c == '>' ||
        c == '%' || c == '@' || c == '`' || c == '?' || c == ':' || c == ',' || c == ']' || c == '}') {
      return false;
    }
    for (size_t q = p; q < s_.size() && s_[q] != '\n'; ++q) {
      if (s_[q] == '#' && q > p && Blank(s_[q - 1])) return false;
      if (s_[q] == ':' && EndsToken(q + 1)) {
        if (emit != nullptr) {
          size_t end = q;
          while (end > p && Blank(s_[end - 1])) --end;
          EmitPlain(p, std::string(s_.substr(p, end - p)));
        }
        *after = q + 1;
        return true;
      }
    }
    return false;
  }

  void EmitPlain(size_t p, std::string text) {
    if (IsNullWord(text)) {
      h_->OnNull(MarkAt(p), YAML::NullAnchor);
    } else {
      h_->OnScalar(MarkAt(p), "?", YAML::NullAnchor, text);
    }
  }

  // A block mapping whose first key is at `p`, in column `indent`.
  void BlockMapping(size_t p, int indent) {
    h_->OnMapStart(MarkAt(p), "?", YAML::NullAnchor, YAML::EmitterStyle::Block);
    while (true) {
      size_t after = 0;
      if (!KeyAt(p, h_, &after)) throw Unsupported();
      Value(after, indent);
      SkipBlankLines();
      if (AtEnd()) break;
      const int next = LineIndent();
      if (next < indent) break;
      if (next > indent) throw Unsupported();
      p = line_start_ + next;
      if (s_[p] == '-' && EndsToken(p + 1)) break;  // the parent's sequence
    }
    h_->OnMapEnd();
  }

  // A block sequence whose first "-" is in column `indent` of this line.
  void BlockSequence(int indent) {
    h_->OnSequenceStart(MarkAt(line_start_ + indent), "?", YAML::NullAnchor, YAML::EmitterStyle::Block);
    while (true) {
      size_t q = line_start_ + indent + 1;
      while (q < s_.size() && s_[q] == ' ') ++q;
      if (At(q) == '\t') throw Unsupported();
      if (q >= s_.size() || s_[q] == '\n' || s_[q] == '#') {
        pos_ = q;
        EndOfLine();
        SkipBlankLines();
        const int next = AtEnd() ? -1 : LineIndent();
        if (next > indent) {
          Node(line_start_ + next, indent);
        } else {
          // As yaml-cpp: where the next token is.
          h_->OnNull(AtEnd() ? EndMark() : MarkAt(line_start_ + next), YAML::NullAnchor);
        }
      } else if (s_[q] == '-' && EndsToken(q + 1)) {
        throw Unsupported();  // "- - a"
      } else {
        size_t after = 0;
        if (KeyAt(q, nullptr, &after)) {
          BlockMapping(q, static_cast<int>(q - line_start_));
        } else {
          InlineValue(q, indent);
        }
      }
      SkipBlankLines();
      if (AtEnd()) break;
      const int next = LineIndent();
      if (next < indent) break;
      if (next > indent) throw Unsupported();
      const size_t p = line_start_ + next;
      if (!(s_[p] == '-' && EndsToken(p + 1))) break;
    }
    h_->OnSequenceEnd();
  }

  // The value after a key's colon at `p`; `indent` is the mapping's.
  void Value(size_t p, int indent) {
    while (p < s_.size() && Blank(s_[p])) ++p;
    if (p >= s_.size() || s_[p] == '\n' || s_[p] == '#') {
      YAML::Mark mark = MarkAt(p);
      pos_ = p;
      EndOfLine();
      SkipBlankLines();
      if (!AtEnd()) {
        const int next = LineIndent();
        const size_t q = line_start_ + next;
        if (next > indent) return Node(q, indent);
        if (next == indent && s_[q] == '-' && EndsToken(q + 1)) return BlockSequence(indent);
        mark = MarkAt(q);  // as yaml-cpp: where the next token is
      } else {
        mark = EndMark();
      }
      h_->OnNull(mark, YAML::NullAnchor);
      return;
    }
    InlineValue(p, indent);
  }

  // A node written on this line (a flow collection may go on over several):
  // a scalar, a flow collection or a block scalar's header.
  void InlineValue(size_t p, int indent) {
    pos_ = p;
    const char c = s_[p];
    if (c == '|' || c == '>') return BlockScalar(indent);
    if (c == '[' || c == '{') {
      Flow(0);
      return EndOfLine();
    }
    if (c == '"' || c == '\'') {
      std::string text = c == '"' ? DoubleQuoted() : SingleQuoted();
      h_->OnScalar(MarkAt(p), "!", YAML::NullAnchor, text);
      return EndOfLine();
    }
    if (c == '&' || c == '*' || c == '!' || c == '%' || c == '@' || c == '`' || c == ',' || c == ']' || c == '}' ||
        c == '#' || ((c == '-' || c == '?' || c == ':') && EndsToken(p + 1))) {
      throw Unsupported();
    }
    size_t q = p;
    size_t end = p;
    for (; q < s_.size() && s_[q] != '\n'; ++q) {
      if (s_[q] == '#' && Blank(s_[q - 1])) break;
      if (s_[q] == ':' && EndsToken(q + 1)) throw Unsupported();  // "a: b: c"
      if (!Blank(s_[q])) end = q + 1;
    }
    if (end == p) throw Unsupported();  // only blanks ("-\r\n"): not a scalar (found by manifest_fuzz)
    EmitPlain(p, std::string(s_.substr(p, end - p)));
    pos_ = q;
    EndOfLine();
  }

  // `pos_` at '"'; returns the text and leaves `pos_` after the closing quote.
  std::string DoubleQuoted() {
    std::string out;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= s_.size() || s_[p] == '\n') throw Unsupported();  // multi-line
      const char c = s_[p];
      if (c == '"') break;
      if (c != '\\') {
        out.push_back(c);
        ++p;
        continue;
      }
      const char e = At(p + 1);
      p += 2;
      switch (e) {
        case '0': out.push_back('\0'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 't': case '\t': out.push_back('\t'); break;
        case 'n': out.push_back('\n'); break;
        case 'v': out.push_back('\v'); break;
        case 'f': out.push_back('\f'); break;
        case 'r': out.push_back('\r'); break;
        case 'e': out.push_back('\x1b'); break;
        case ' ': case '"': case '/': case '\\': out.push_back(e); break;
        case 'x': case 'u': case 'U': {
          const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (size_t i = 0; i < digits; ++i, ++p) {
            const char h = At(p);
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                   : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0) throw Unsupported();
            cp = cp * 16 + static_cast<uint32_t>(d);
          }
          if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) throw Unsupported();
          AppendUtf8(cp, &out);
          break;
        }
        default:
          throw Unsupported();
      }
    }
    pos_ = p + 1;
    return out;
  }

  std::string SingleQuoted() {
    std::string out;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= s_.size() || s_[p] == '\n') throw Unsupported();
      if (s_[p] == '\'') {
        if (At(p + 1) != '\'') break;
        ++p;
      }
      out.push_back(s_[p++]);
    }
    pos_ = p + 1;
    return out;
  }

  // Blanks, line breaks and comments inside a flow collection.
  void FlowSpace() {
    bool after_blank = false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '\n') {
        NextLine();
        after_blank = true;
      } else if (Blank(c)) {
        ++pos_;
        after_blank = true;
      } else if (c == '#' && after_blank) {
        const size_t nl = s_.find('\n', pos_);
        pos_ = nl == absl::string_view::npos ? s_.size() : nl;
      } else {
        return;
      }
    }
  }

  // A flow collection or scalar at `pos_`; leaves `pos_` just after it.
  void Flow(int depth) {
    if (depth > kMaxFlowDepth || AtEnd()) throw Unsupported();
    const char c = s_[pos_];
    const YAML::Mark mark = MarkAt(pos_);
    if (c == '[' || c == '{') {
      const bool map = c == '{';
      const char close = map ? '}' : ']';
      if (map) {
        h_->OnMapStart(mark, "?", YAML::NullAnchor, YAML::EmitterStyle::Flow);
      } else {
        h_->OnSequenceStart(mark, "?", YAML::NullAnchor, YAML::EmitterStyle::Flow);
      }
      ++pos_;
      while (true) {
        FlowSpace();
        if (At(pos_) == close) break;
        Flow(depth + 1);
        const int key_line = line_;
        FlowSpace();
        if (map) {
          // An implicit key ends on its own line: yaml-cpp refuses "{a\n: b}"
          // (found by manifest_fuzz).
          if (At(pos_) != ':' || line_ != key_line) throw Unsupported();
          ++pos_;
          FlowSpace();
          if (At(pos_) == ',' || At(pos_) == '}') {
            h_->OnNull(MarkAt(pos_), YAML::NullAnchor);
          } else {
            Flow(depth + 1);
            FlowSpace();
          }
        }
        if (At(pos_) == ',') {
          ++pos_;
          continue;
        }
        if (At(pos_) != close) throw Unsupported();
        break;
      }
      ++pos_;
      map ? h_->OnMapEnd() : h_->OnSequenceEnd();
      return;
    }
    if (c == '"' || c == '\'') {
      std::string text = c == '"' ? DoubleQuoted() : SingleQuoted();
      h_->OnScalar(mark, "!", YAML::NullAnchor, text);
      return;
    }
    if (c == '&' || c == '*' || c == '!' || c == '%' || c == '@' || c == '`' || c == '|' || c == '>' || c == '#' ||
        c == ',' || c == ']' || c == '}' || ((c == '-' || c == '?' || c == ':') && EndsToken(pos_ + 1))) {
      throw Unsupported();
    }
    const size_t p = pos_;
    size_t end = p;
    size_t q = p;
    for (; q < s_.size(); ++q) {
      const char x = s_[q];
      if (x == '\n' || x == ',' || x == '[' || x == ']' || x == '{' || x == '}') break;
      if (x == '#' && Blank(s_[q - 1])) break;
      if (x == ':') {
        if (EndsToken(q + 1)) break;
        // yaml-cpp reads "{a:[]}" or "[a:, b]" its own way, or refuses
        // them (found by manifest_fuzz).
        const char n = At(q + 1);
        if (n == ',' || n == '[' || n == ']' || n == '{' || n == '}') throw Unsupported();
      }
      // yaml-cpp refuses a '?' anywhere in a plain scalar inside a flow
      // collection ("unknown token"); its error words it (found by
      // manifest_fuzz).
      if (x == '?') throw Unsupported();
      if (!Blank(x)) end = q + 1;
    }
    // Nothing before a ':' ("{: b}"): yaml-cpp reads a null key, not ""
    // (found by manifest_fuzz).
    if (end == p) throw Unsupported();
    EmitPlain(p, std::string(s_.substr(p, end - p)));
    pos_ = q;
  }

  // `pos_` at '|' or '>'; `indent` is the enclosing collection's column.
  void BlockScalar(int indent) {
    if (indent < 0) throw Unsupported();  // a whole document as a block scalar
    const YAML::Mark mark = MarkAt(pos_);
    const bool folded = s_[pos_] == '>';
    char chomp = 'c';
    ++pos_;
    if (At(pos_) == '-' || At(pos_) == '+') chomp = s_[pos_++];
    if (At(pos_) >= '0' && At(pos_) <= '9') throw Unsupported();
    EndOfLine();
    std::vector<absl::string_view> lines;
    size_t content = 0;  // the content's indentation, from its first line
    size_t trailing = 0;  // empty lines after the last one with text
    size_t leading = 0;   // the most spaces on an empty line before the first with text
    while (!AtEnd()) {
      const size_t nl = s_.find('\n', pos_);
      const size_t end = nl == absl::string_view::npos ? s_.size() : nl;
      absl::string_view line = s_.substr(pos_, end - pos_);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      // A last line without its line break: yaml-cpp's chomping of it is
      // its own (found by manifest_fuzz).
      if (nl == absl::string_view::npos) throw Unsupported();
      size_t spaces = 0;
      while (spaces < line.size() && line[spaces] == ' ') ++spaces;
      const bool empty = spaces == line.size();
      if (!empty && content == 0) {
        if (static_cast<int>(spaces) <= indent) break;  // no content at all
        if (line[spaces] == '\t') throw Unsupported();
        content = spaces;
        // A spaces-only line longer than the indentation (yaml-cpp takes
        // the indentation from it, and so reads another text or refuses the
        // document; found by manifest_fuzz: the lines kept here are empty,
        // so the check was on their lengths, always 0).
        if (leading > content) throw Unsupported();
      }
      if (empty) {
        if (content != 0 && spaces > content) throw Unsupported();
        if (content == 0) leading = std::max(leading, spaces);
        lines.push_back(absl::string_view());
        ++trailing;
      } else {
        if (spaces < content) break;
        if (folded && (spaces > content || line[content] == '\t')) throw Unsupported();
        lines.push_back(line.substr(content));
        trailing = 0;
      }
      NextLine();
    }
    if (content == 0) {
      if (chomp == '+' && !lines.empty()) throw Unsupported();
      // The lines read were empty ones; the next node starts after them.
      h_->OnScalar(mark, "!", YAML::NullAnchor, "");
      return;
    }
    const size_t used = lines.size() - trailing;
    std::string text;
    size_t breaks = 0;
    bool first = true;
    for (size_t i = 0; i < used; ++i) {
      if (lines[i].empty()) {
        ++breaks;
        if (!folded) text.push_back('\n');
        continue;
      }
      if (folded) {
        if (first) {
          text.append(breaks, '\n');
        } else if (breaks == 0) {
          text.push_back(' ');
        } else {
          text.append(breaks, '\n');
        }
      } else if (!first) {
        text.push_back('\n');
      }
      breaks = 0;
      first = false;
      text.append(lines[i].data(), lines[i].size());
    }
    if (chomp != '-') text.push_back('\n');
    if (chomp == '+') text.append(trailing, '\n');
    h_->OnScalar(mark, "!", YAML::NullAnchor, text);
  }

  absl::string_view s_;
  YAML::EventHandler* h_;
  size_t pos_ = 0;
  int line_;
  size_t line_start_ = 0;
  size_t base_;
};

}  // namespace

bool FastReadYamlDocument(const YamlDocumentText& doc, YAML::EventHandler* handler) {
  try {
    FastReader(doc, handler).Read();
    return true;
  } catch (const Unsupported&) {
    return false;
  }
}

}  // namespace nftproxy::manifest
