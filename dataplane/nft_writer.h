// Writes rulesets to the kernel: one nf_tables netlink batch per commit,
// built with libnftnl (nft_batch.h) and sent with one sendmsg over paged
// buffers (netlink_socket.h). The kernel applies a batch entirely or not
// at all. This file owns the order of a full and of a delta commit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/ruleset.h"
#include "dataplane/ruleset_writer.h"

namespace nftproxy::dp {

class NftWriter final : public RulesetWriter {
 public:
  // On the netfilter netlink socket (needs CAP_NET_ADMIN).
  static absl::StatusOr<std::unique_ptr<NftWriter>> Create();
  // On the given socket.
  explicit NftWriter(std::unique_ptr<NetlinkSocket> socket) : socket_(std::move(socket)) {}
  NftWriter(const NftWriter&) = delete;
  NftWriter& operator=(const NftWriter&) = delete;

  // One batch `add table; delete table; add table ...everything...`, built
  // in two parts at once.
  absl::Status CommitFull(const Ruleset& to, CommitStats* stats,
                          const std::function<void()>& alongside = nullptr) override;

  // The comment of table inet `table`: nullopt when there is no such table,
  // "" when it has none.
  absl::StatusOr<std::optional<std::string>> TableComment(const std::string& table);

  absl::StatusOr<KernelTable> ReadTable(const std::string& table) override;

  // One batch proportional to the change, whatever the table's size.
  absl::Status CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                           const Ruleset& added, CommitStats* stats) override;

 private:
  std::unique_ptr<NetlinkSocket> socket_;
  uint32_t seq_ = 1;
};

}  // namespace nftproxy::dp
