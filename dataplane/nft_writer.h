// Writes Ruleset changes to the kernel: one nf_tables netlink batch per
// commit, built with libnftnl and sent with one sendmsg over paged buffers.
// The kernel applies the batch entirely or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "dataplane/ruleset.h"

struct mnl_socket;

namespace nftproxy::dp {

struct CommitStats {
  uint32_t messages = 0;  // netlink messages in the batch, BEGIN/END excluded
  uint64_t bytes = 0;
  bool full = false;      // replaced the whole table
  absl::Duration build;   // building the batch
  absl::Duration kernel;  // sending it until the kernel's answer
};

class NftWriter {
 public:
  static absl::StatusOr<std::unique_ptr<NftWriter>> Create();
  ~NftWriter();
  NftWriter(const NftWriter&) = delete;
  NftWriter& operator=(const NftWriter&) = delete;

  // Makes the kernel table equal `to` whatever it held before: create if
  // missing, delete, rebuild, in one batch, so traffic never sees it empty.
  // `alongside`, when given, runs on another thread while the kernel takes
  // the batch.
  absl::Status CommitFull(const Ruleset& to, CommitStats* stats, const std::function<void()>& alongside = nullptr);

  // Changes a table that holds `base_shards` shards: deletes the objects of
  // `removed` and adds those of `added` (see Diff in ruleset.h; a chain in
  // both is flushed and refilled, an element in both is replaced). The
  // batch is proportional to the change, whatever the table's size.
  absl::Status CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                           const Ruleset& added, CommitStats* stats);

 private:
  explicit NftWriter(mnl_socket* nl) : nl_(nl) {}
  mnl_socket* nl_;
  uint32_t seq_ = 1;
};

}  // namespace nftproxy::dp
