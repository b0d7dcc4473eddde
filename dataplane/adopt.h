// Adopting the table a previous run left: the first commit of a run, when
// the kernel already holds nftproxy's table, changes only what differs
// from the desired model instead of replacing the table. Service ports keep
// the indexes (and so the tickets) the kernel's chains use, so the affinity
// maps' entries stay valid and are kept; unchanged chains and elements are
// not rewritten. A table whose fixed part differs (other node settings, an
// nftproxy with another table layout, objects nftproxy does not make) cannot
// be adopted: the caller falls back to a full replacement.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/model.h"
#include "dataplane/nft_reader.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {

struct AdoptPlan {
  Ruleset desired;     // the model compiled with the kernel's indexes
  Ruleset removed;     // what to delete from the kernel (Diff's sense)
  Ruleset added;       // what to add
  uint32_t base_shards = 0;  // shards the kernel has
  size_t kept_chains = 0, rewritten_chains = 0, kept_indexes = 0;
};

// FailedPrecondition (with the reason) when `k` cannot be adopted. With
// `known`, service ports keep those indexes (a running dataplane repairing
// drift) instead of the ones the kernel's chains give away.
absl::StatusOr<AdoptPlan> PlanAdoption(const KernelTable& k, const Model& model, const std::string& table,
                                       const IndexMap* known = nullptr);

// Where the kernel's table differs from `desired`, one line per object
// (chain, set, element): "chain svc4/default/web/tcp/80: rule 1: the kernel
// has ..., nftproxy wants ...", "element service-ips4 { ... }: missing in
// the kernel". Empty when they are the same. For `explain --kernel`.
std::vector<std::string> KernelDifferences(const KernelTable& k, const Ruleset& desired);

}  // namespace nftproxy::dp
