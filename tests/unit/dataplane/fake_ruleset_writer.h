// An in-memory RulesetWriter with the kernel's rules: each full or delta
// commit is applied to a Ruleset the way nf_tables would apply the batch
// NftWriter builds for it, and refused (state unchanged, as for an atomic
// batch) where the kernel would refuse it: deleting a missing element or
// chain (ENOENT), adding an existing element (EEXIST: NLM_F_EXCL), an
// element or rule pointing at a missing chain (ENOENT), deleting a chain
// still referenced (EBUSY), creating a chain or shard twice (EEXIST),
// flushing a missing chain (ENOENT), using a backends map of a shard that
// does not exist (ENOENT), a rule naming a missing counter (ENOENT),
// creating a counter twice (EEXIST), deleting a counter a rule still names
// (EBUSY). It can also fail on demand.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "dataplane/ruleset_writer.h"

namespace nftproxy::dp::testing {

class FakeRulesetWriter final : public RulesetWriter {
 public:
  absl::Status CommitFull(const Ruleset& to, CommitStats* stats,
                          const std::function<void()>& alongside = nullptr) override;
  absl::Status CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                           const Ruleset& added, CommitStats* stats) override;

  // The next `n` commits fail with `status` and change nothing.
  void FailNext(int n = 1, absl::Status status = absl::UnavailableError("injected failure"));
  // Forgets the table, as if someone deleted it behind the dataplane's back.
  void DropTable() { exists_ = false; }

  // The table as the kernel would hold it: address-set elements have
  // count 1, no indexes (the kernel has none).
  const Ruleset& state() const { return state_; }
  bool exists() const { return exists_; }
  int full_commits() const { return full_commits_; }
  int delta_commits() const { return delta_commits_; }
  int refused_commits() const { return refused_commits_; }
  // Counter objects created so far (a created counter starts from zero).
  size_t counters_created() const { return counters_created_; }
  // Why the last commit the fake refused by the kernel's rules was refused.
  const absl::Status& last_refusal() const { return last_refusal_; }

 private:
  absl::Status Injected();

  Ruleset state_;
  bool exists_ = false;
  int fail_next_ = 0;
  absl::Status fail_status_;
  absl::Status last_refusal_;
  int full_commits_ = 0, delta_commits_ = 0, refused_commits_ = 0;
  size_t counters_created_ = 0;
};

// "" when `kernel` holds exactly the objects of `want` (address-set
// reference counts and indexes aside), else the first differences.
std::string RulesetDifference(const Ruleset& kernel, const Ruleset& want);

}  // namespace nftproxy::dp::testing
