#include "client/printer.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <ostream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/jsonpath.h"
#include "client/output.h"

namespace nftproxy::client {
namespace {

using google::protobuf::Value;

class TablePrinter : public Printer {
 public:
  TablePrinter(const PrintOptions& o, std::ostream* out) : o_(o), out_(out), wide_(o.format == "wide") {}

  bool Counted(v1::Kind kind) const { return wide_ && kind == v1::SERVICE && o_.connections != nullptr; }

  void Add(const v1::Resource& r) override {
    const v1::Kind kind = KindOf(r);
    if (count_ == 0 || kind != kind_) {
      Flush();
      if (count_ > 0) *out_ << "\n";  // tables of several kinds, apart
      kind_ = kind;
      width_.clear();
      header_ = o_.no_headers ? std::vector<std::string>{} : TableHeader(kind, wide_);
      if (!header_.empty() && Counted(kind)) header_.push_back("CONNECTIONS");
      Widen(header_);
    }
    std::vector<std::string> row = TableRow(r, wide_, o_.now);
    if (Counted(kind)) row.push_back(o_.connections(KeyOf(r).ns, MetaOf(r).name()));
    if (o_.several_kinds && row.size() > 1) row[1] = absl::StrCat(KindName(kind), "/", row[1]);
    Widen(row);
    rows_.push_back(std::move(row));
    ++count_;
  }

  void Flush() override {
    if (!header_.empty()) {
      *out_ << Line(header_);
      header_.clear();
    }
    std::string text;
    for (const auto& row : rows_) text += Line(row);
    *out_ << text << std::flush;
    rows_.clear();
  }

  void Finish() override { Flush(); }
  bool SilentWhenEmpty() const override { return true; }

 private:
  void Widen(const std::vector<std::string>& row) {
    if (width_.size() < row.size()) width_.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width_[i] = std::max(width_[i], row[i].size());
  }

  std::string Line(const std::vector<std::string>& row) const {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width_[i] - row[i].size() + 3, ' ');
    }
    return line + "\n";
  }

  const PrintOptions o_;
  std::ostream* out_;
  const bool wide_;
  v1::Kind kind_ = v1::KIND_UNSPECIFIED;
  std::vector<size_t> width_;
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

class NamePrinter : public Printer {
 public:
  explicit NamePrinter(std::ostream* out) : out_(out) {}
  void Add(const v1::Resource& r) override {
    absl::StrAppend(&text_, KindName(KindOf(r)), "/", MetaOf(r).name(), "\n");
    ++count_;
  }
  void Flush() override {
    *out_ << text_ << std::flush;
    text_.clear();
  }
  void Finish() override { Flush(); }
  bool SilentWhenEmpty() const override { return true; }

 private:
  std::ostream* out_;
  std::string text_;
};

class YamlPrinter : public Printer {
 public:
  explicit YamlPrinter(std::ostream* out) : out_(out) {}
  void Add(const v1::Resource& r) override {
    absl::StrAppend(&text_, count_ ? "---\n" : "", ResourceYaml(r));
    ++count_;
  }
  void Flush() override {
    *out_ << text_ << std::flush;
    text_.clear();
  }
  void Finish() override { Flush(); }

 private:
  std::ostream* out_;
  std::string text_;
};

constexpr char kListHead[] = "{\n  \"kind\": \"List\",\n  \"items\": [";

class JsonPrinter : public Printer {
 public:
  JsonPrinter(bool single, std::ostream* out) : single_(single), out_(out) {}
  void Add(const v1::Resource& r) override {
    if (single_) {
      text_ += ResourceJson(r);
    } else {
      absl::StrAppend(&text_, count_ ? ",\n" : absl::StrCat(kListHead, "\n"), ListItemJson(r));
    }
    ++count_;
  }
  void Flush() override {
    *out_ << text_ << std::flush;
    text_.clear();
  }
  void Finish() override {
    if (!single_) text_ += count_ ? "\n  ]\n}\n" : absl::StrCat(kListHead, "]\n}\n");
    Flush();
  }

 private:
  const bool single_;
  std::ostream* out_;
  std::string text_;
};

Value ToValue(const v1::Resource& r) {
  Value v;
  (void)google::protobuf::util::JsonStringToMessage(ResourceJson(r), &v);
  return v;
}

// The list root a template sees: {"kind": "List", "items": [...]}.
Value ListValue(std::vector<Value>* items) {
  Value root;
  auto& f = *root.mutable_struct_value()->mutable_fields();
  f["kind"].set_string_value("List");
  auto* list = f["items"].mutable_list_value();
  for (Value& v : *items) *list->add_values() = std::move(v);
  items->clear();
  return root;
}

class JsonPathPrinter : public Printer {
 public:
  JsonPathPrinter(JsonPathTemplate t, bool single, std::ostream* out)
      : t_(std::move(t)), single_(single), out_(out), items_node_(single ? JsonPathTemplate::npos : t_.StreamingItemsNode()) {}

  void Add(const v1::Resource& r) override {
    if (single_) {
      *out_ << t_.Execute(ToValue(r)) << std::flush;
    } else {
      page_.push_back(ToValue(r));
    }
    ++count_;
  }

  void Flush() override {
    if (single_ || items_node_ == JsonPathTemplate::npos) return;  // all at once, in Finish
    Head();
    if (page_.empty()) return;
    const Value root = ListValue(&page_);
    std::string text;
    for (const std::string& s : t_.NodeResults(items_node_, root)) {
      // A field over .items[*] prints its results joined by a space, across
      // pages as within one.
      if (t_.JoinsWithSpace(items_node_) && printed_results_++ > 0) text += " ";
      text += s;
    }
    *out_ << text << std::flush;
  }

  void Finish() override {
    if (single_) return;
    if (items_node_ == JsonPathTemplate::npos) {
      *out_ << t_.Execute(ListValue(&page_)) << std::flush;
      return;
    }
    Flush();
    std::vector<Value> none;
    *out_ << t_.ExecuteNodes(items_node_ + 1, t_.size(), ListValue(&none)) << std::flush;
  }

 private:
  void Head() {
    if (head_done_) return;
    head_done_ = true;
    std::vector<Value> none;
    *out_ << t_.ExecuteNodes(0, items_node_, ListValue(&none));
  }

  const JsonPathTemplate t_;
  const bool single_;
  std::ostream* out_;
  const size_t items_node_;
  std::vector<Value> page_;
  bool head_done_ = false;
  size_t printed_results_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Printer>> NewPrinter(const PrintOptions& o, std::ostream* out) {
  if (o.format == "table" || o.format == "wide") return std::unique_ptr<Printer>(new TablePrinter(o, out));
  if (o.format == "name") return std::unique_ptr<Printer>(new NamePrinter(out));
  if (o.format == "yaml") return std::unique_ptr<Printer>(new YamlPrinter(out));
  if (o.format == "json") return std::unique_ptr<Printer>(new JsonPrinter(o.single, out));
  if (absl::StartsWith(o.format, "jsonpath=")) {
    absl::StatusOr<JsonPathTemplate> t = JsonPathTemplate::Parse(o.format.substr(9));
    if (!t.ok()) return t.status();
    return std::unique_ptr<Printer>(new JsonPathPrinter(std::move(*t), o.single, out));
  }
  return absl::InvalidArgumentError(absl::StrCat("-o ", o.format, ": not an output format"));
}

}  // namespace nftproxy::client
