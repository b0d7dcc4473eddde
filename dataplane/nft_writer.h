// Writes Ruleset changes to the kernel: one nf_tables netlink batch per
// commit, built with libnftnl and sent with one sendmsg over paged buffers.
// The kernel applies the batch entirely or not at all.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/ruleset.h"

struct mnl_socket;

namespace nftproxy::dp {

struct CommitStats {
  uint32_t messages = 0;  // netlink messages in the batch, BEGIN/END excluded
  uint64_t bytes = 0;
  bool full = false;      // replaced the whole table
};

class NftWriter {
 public:
  static absl::StatusOr<std::unique_ptr<NftWriter>> Create();
  ~NftWriter();
  NftWriter(const NftWriter&) = delete;
  NftWriter& operator=(const NftWriter&) = delete;

  // Makes the kernel table equal `to`. With `from` == nullptr the kernel
  // state is unknown and the table is replaced whole (create if missing,
  // delete, rebuild — in one batch, so traffic never sees it empty).
  // Otherwise only the difference from `from` is sent.
  absl::Status Commit(const Ruleset* from, const Ruleset& to, CommitStats* stats);

 private:
  explicit NftWriter(mnl_socket* nl) : nl_(nl) {}
  mnl_socket* nl_;
  uint32_t seq_ = 1;
};

}  // namespace nftproxy::dp
