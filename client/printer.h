// How `get` prints what it finds, as List pages arrive: no format needs the
// whole listing in memory (but a jsonpath template that walks .items more
// than once, see NewPrinter).
//
// Tables: each page's rows are printed when the page is done, in columns as
// wide as the widest cell seen so far (the header and the first page set
// them; a later, wider cell widens its column from that page on). kubectl
// prints each chunk with its own widths; keeping the widths of earlier pages
// keeps one listing aligned in the common case where later pages are no
// wider.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/resource.h"

namespace nftproxy::client {

struct PrintOptions {
  // table, wide, yaml, json, name or jsonpath=TEMPLATE.
  std::string format = "table";
  bool no_headers = false;
  // Several kinds in one listing: a table per kind, NAME as kind/name.
  bool several_kinds = false;
  // One named resource: json and jsonpath print it, not a List of it.
  bool single = false;
  absl::Time now = absl::Now();
  // -o wide of services: the CONNECTIONS column's value of service ns/name
  // (the kernel's counters); no column when unset.
  std::function<std::string(const std::string& ns, const std::string& name)> connections;
};

class Printer {
 public:
  virtual ~Printer() = default;
  // Resources come grouped by kind; a table starts anew with each kind.
  virtual void Add(const v1::Resource& r) = 0;
  // The end of a page: what was added is printed (and forgotten).
  virtual void Flush() = 0;
  // After the last resource: closes a JSON list, prints a template's tail.
  virtual void Finish() = 0;
  // Resources added so far.
  size_t count() const { return count_; }
  // Whether an empty listing prints nothing at all (then the caller says
  // "No resources found" on stderr, as kubectl does); yaml, json and
  // jsonpath print an empty list instead.
  virtual bool SilentWhenEmpty() const { return false; }

 protected:
  size_t count_ = 0;
};

// InvalidArgument for an unknown format or a template that does not parse.
absl::StatusOr<std::unique_ptr<Printer>> NewPrinter(const PrintOptions& options, std::ostream* out);

}  // namespace nftproxy::client
