// What NftDataplane needs from a writer of rulesets: a whole table, or a
// difference, committed atomically. NftWriter (nft_writer.h) is the real
// one; tests use an in-memory fake with the kernel's rules.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dataplane/nft_reader.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {

struct CommitStats {
  uint32_t messages = 0;  // netlink messages in the batch, BEGIN/END excluded
  uint64_t bytes = 0;
  bool full = false;      // replaced the whole table
  absl::Duration build;   // building the batch
  absl::Duration kernel;  // sending it until the kernel's answer
};

class RulesetWriter {
 public:
  virtual ~RulesetWriter() = default;

  // Makes the table equal `to` whatever it held before (created if
  // missing), all or nothing, so traffic never sees it empty. `alongside`,
  // when given, runs on another thread while the kernel takes the batch.
  virtual absl::Status CommitFull(const Ruleset& to, CommitStats* stats,
                                  const std::function<void()>& alongside = nullptr) = 0;

  // Changes a table that holds `base_shards` shards: deletes the objects of
  // `removed` and adds those of `added` (see Diff in ruleset.h; a chain in
  // both is flushed and refilled, an element in both is replaced), all or
  // nothing. The address-set elements of `removed` and `added` are deleted
  // and added as they are (the caller counts references).
  virtual absl::Status CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                                   const Ruleset& added, CommitStats* stats) = 0;

  // What the kernel holds in table inet `table` (nft_reader.h); writers
  // that cannot read back say Unimplemented, and the dataplane then always
  // replaces the table on its first commit.
  virtual absl::StatusOr<KernelTable> ReadTable(const std::string& table) {
    return absl::UnimplementedError("this writer cannot read the table back");
  }
};

}  // namespace nftproxy::dp
