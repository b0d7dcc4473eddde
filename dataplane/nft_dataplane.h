#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "dataplane/conntrack.h"
#include "dataplane/dataplane.h"
#include "dataplane/nft_writer.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {

// The real dataplane: compile, diff against the last commit, write.
class NftDataplane final : public Dataplane {
 public:
  static absl::StatusOr<std::unique_ptr<NftDataplane>> Create(const std::string& table);

  absl::Status Apply(const Model& model, ApplyResult* result) override;
  std::string Render(const Model& model) const override;
  std::string Installed() const override;
  std::string Table() const override { return "inet " + table_; }

 private:
  NftDataplane(std::string table, std::unique_ptr<NftWriter> writer)
      : table_(std::move(table)), writer_(std::move(writer)) {}

  std::string table_;
  std::unique_ptr<NftWriter> writer_;
  // What the kernel holds, as far as we know. Unset until the first commit:
  // the table a previous run left keeps serving until then.
  std::optional<Ruleset> installed_;
  // Every UDP endpoint of the last commit; those that disappear get their
  // conntrack entries deleted.
  std::set<FlowTarget> udp_targets_;
};

}  // namespace nftproxy::dp
