// The netlink side of the compiler fuzz target (compiler_fuzz.cc), written
// from nf_tables' semantics rather than from nftproxy's encoder:
//
//  - NftKernel applies nf_tables batches (the bytes NftWriter sends) to one
//    inet table with the kernel's refusals: a missing table, chain or set
//    (ENOENT), an element added twice under NLM_F_EXCL (EEXIST), an element
//    deleted that is not there (ENOENT), a chain deleted while a rule or a
//    verdict-map element still goes to it (EBUSY), a key or data of the
//    wrong length (EINVAL), overlapping intervals (ENOTEMPTY), a chain name
//    too long (ENAMETOOLONG), a dynset into a set that is not dynamic
//    (EOPNOTSUPP); for object maps (NFT_SET_OBJECT, of counters here): a
//    set both map and object map (EOPNOTSUPP), a start element without a
//    counter or naming none of the table (EINVAL, ENOENT), data or a
//    counter on an element where none belongs (EINVAL), a counter deleted
//    while a rule or an element names it (EBUSY), an objref through a set
//    that is not an object map (EINVAL). A refused batch changes nothing.
//  - Listing() decodes what it holds back into `nft list table` terms:
//    set declarations and elements, chain hooks, and each rule's
//    expressions as the statements nft prints for them (register tracking
//    as nft's delinearization does it: loads, concatenations, masks, the
//    `meta nfproto` dependency of an ip/ip6 header match, lookups, maps,
//    dynset, nat, counters by name or through an object map...). Anything
//    it cannot decode, or that nft would print differently from what
//    nftproxy's renderer assumes (a missing dependency, a key component of
//    the wrong type, an unconverted host order mark), is spelled so that it
//    cannot equal the rendered text.
//  - ParseListing reads render.cc's text into the same form, so that the two
//    compare object by object (elements as sets, rules in order).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy::fuzz {

struct SetListing {
  bool map = false;
  std::vector<std::string> header;    // "type ...", "size N", "flags ..."
  std::vector<std::string> elements;  // sorted
};

struct ChainListing {
  std::string hook;  // "type nat hook prerouting priority dstnat; policy accept;" or ""
  std::vector<std::string> rules;
};

struct TableListing {
  std::string name;
  std::string comment;
  std::map<std::string, SetListing> sets;
  std::map<std::string, ChainListing> chains;
  std::set<std::string> counters;  // named counter objects
};

// render.cc's text (`table inet NAME { ... }`) as a listing.
absl::StatusOr<TableListing> ParseListing(absl::string_view text);

// "" when equal, else the first differences, one per line.
std::string Difference(const TableListing& want, const TableListing& got);

class NftKernel {
 public:
  NftKernel();
  ~NftKernel();
  NftKernel(const NftKernel&) = delete;
  NftKernel& operator=(const NftKernel&) = delete;

  // Applies one batch (BEGIN ... END) all or nothing. The error names the
  // refused message (its index and type) and the errno the kernel gives.
  absl::Status Apply(absl::string_view batch);

  bool has_table() const;
  // The table as `nft list table` would show it; nullopt without a table.
  std::optional<TableListing> Listing() const;
  // Batches applied and messages in them, for statistics.
  int batches() const { return batches_; }

  struct Table;  // what it holds (nft_kernel.cc)

 private:
  std::unique_ptr<Table> table_;
  int batches_ = 0;
};

}  // namespace nftproxy::fuzz
