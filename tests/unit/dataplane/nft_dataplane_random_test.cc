// NftDataplane against the fake writer, rootless: thousands of random
// model changes (upserts, removes, whole-model Applies, node-setting
// changes that force a full commit, injected failures that take the
// give-back and full-commit fallback paths). At checkpoints the fake's
// table must equal a fresh compile of the model this test keeps, with the
// dataplane's indexes and shards; the dataplane's installed model must
// equal that model; every service port must hold one unique index.
// NFTPROXY_SEED repeats a run; NFTPROXY_RANDOM_OPS sets its length.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>

#include "dataplane/nft_dataplane.h"
#include "dataplane/ruleset.h"
#include "tests/unit/dataplane/fake_ruleset_writer.h"
#include "tests/unit/dataplane/random_model.h"

namespace nftproxy::dp {
namespace {

class CountingFlusher final : public FlowFlusher {
 public:
  absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) override {
    calls++;
    return static_cast<int>(targets.size());
  }
  int calls = 0;
};

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

Model ToModel(const NodeSettings& node, const std::map<std::string, Service>& services) {
  Model m;
  m.node = node;
  for (const auto& [key, svc] : services) m.services.push_back(svc);
  return m;
}

TEST(NftDataplaneRandom, FakeKernelMatchesAFreshCompile) {
  const uint64_t seed = EnvOr("NFTPROXY_SEED", std::random_device{}());
  const int ops = static_cast<int>(EnvOr("NFTPROXY_RANDOM_OPS", 3000));
  printf("[random] NFTPROXY_SEED=%llu NFTPROXY_RANDOM_OPS=%d\n", static_cast<unsigned long long>(seed), ops);
  SCOPED_TRACE(::testing::Message() << "NFTPROXY_SEED=" << seed);
  auto* fake = new testing::FakeRulesetWriter;
  auto* flusher = new CountingFlusher;
  auto dp = NftDataplane::Create("rnd", std::unique_ptr<RulesetWriter>(fake), std::unique_ptr<FlowFlusher>(flusher));
  testing::RandomModel g(seed, 300);

  NodeSettings node = g.Node();
  std::map<std::string, Service> model;
  for (int slot = 0; slot < g.slots(); ++slot) {
    if (g.Chance(50)) model[g.SlotKey(slot)] = g.Make(slot);
  }
  ASSERT_TRUE(dp->Apply(ToModel(node, model), nullptr).ok());

  int step = 0;
  auto check = [&] {
    const Model m = ToModel(node, model);
    const Ruleset want = Compile(m, "rnd", &dp->indexes(), dp->shards());
    const std::string diff = testing::RulesetDifference(fake->state(), want);
    ASSERT_EQ(diff, "") << "after step " << step << " (NFTPROXY_SEED=" << seed << ")";
    const Model installed = dp->InstalledModel();
    ASSERT_TRUE(Ruleset::SameNode(installed.node, want.node)) << "step " << step;
    ASSERT_EQ(installed.services.size(), m.services.size()) << "step " << step;
    for (size_t i = 0; i < m.services.size(); ++i) {
      ASSERT_EQ(installed.services[i], m.services[i]) << "step " << step << ": " << m.services[i].Key();
    }
    std::set<std::string> keys;
    for (const Service& svc : m.services) {
      for (std::string& k : IndexKeys(svc)) keys.insert(std::move(k));
    }
    std::set<uint32_t> seen;
    for (const auto& [key, index] : dp->indexes()) {
      ASSERT_TRUE(keys.count(key)) << "step " << step << ": index of a gone service port " << key;
      ASSERT_TRUE(seen.insert(index).second) << "step " << step << ": index " << index << " twice";
    }
    ASSERT_EQ(seen.size(), keys.size()) << "step " << step << ": a service port without an index";
  };

  int failures = 0, fallbacks = 0;
  for (step = 1; step <= ops; ++step) {
    const int what = g.Int(0, 99);
    const int full_before = fake->full_commits();
    if (what < 3) {
      // New node settings: a full commit, sometimes refused.
      NodeSettings next = g.Node();
      const bool fail = g.Chance(25);
      if (fail) fake->FailNext();
      absl::Status s = dp->Apply(ToModel(next, model), nullptr);
      // The dataplane compares the settings as the table holds them
      // (endpoint counters without counters are none).
      if (fail && !Ruleset::SameNode(NormalizedNode(next), NormalizedNode(node))) {
        ASSERT_FALSE(s.ok()) << "step " << step;
        ++failures;
      } else {
        if (fail) fake->FailNext(0);
        ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
        node = next;
      }
    } else {
      // Some services change; through Update or a whole-model Apply.
      std::map<std::string, Service> next = model;
      ModelChange change;
      std::set<std::string> touched;
      const int n = g.Chance(5) ? g.Int(10, 40) : g.Int(1, 5);
      for (int i = 0; i < n; ++i) {
        const int slot = g.Int(0, g.slots() - 1);
        const std::string key = g.SlotKey(slot);
        if (!touched.insert(key).second) continue;
        auto it = next.find(key);
        if (it != next.end() && g.Chance(25)) {
          change.removes.push_back(key);
          next.erase(it);
        } else {
          Service svc = it != next.end() ? g.Mutate(it->second, slot) : g.Make(slot);
          next[key] = svc;
          change.upserts.push_back(std::move(svc));
        }
      }
      // 1 in 20: the delta is refused (the full fallback commits); 1 in 50:
      // the fallback is refused too (nothing changes).
      const int fail = g.Chance(5) ? 1 : g.Chance(2) ? 2 : 0;
      if (fail) fake->FailNext(fail);
      const int deltas_before = fake->delta_commits();
      absl::Status s = what < 8 ? dp->Apply(ToModel(node, next), nullptr) : dp->Update(change, nullptr);
      const bool changed = next != model;
      if (fail == 2 && changed) {
        ASSERT_FALSE(s.ok()) << "step " << step;
        ++failures;
      } else {
        ASSERT_TRUE(s.ok()) << "step " << step << ": " << s;
        model = std::move(next);
        if (fail == 1 && changed) {
          ASSERT_EQ(fake->full_commits(), full_before + 1) << "step " << step << ": no full-commit fallback";
          ++fallbacks;
        } else if (changed) {
          ASSERT_EQ(fake->delta_commits(), deltas_before + 1)
              << "step " << step << ": the delta was refused: " << fake->last_refusal();
        }
      }
      fake->FailNext(0);
    }
    if (step % 100 == 0 || step == ops) {
      check();
      if (HasFatalFailure()) return;
    }
  }
  printf("[random] %d steps, %d full and %d delta commits, %d refused, %d fallbacks, %d failed requests, "
         "%d conntrack flushes\n",
         ops, fake->full_commits(), fake->delta_commits(), fake->refused_commits(), fallbacks, failures,
         flusher->calls);
  EXPECT_GT(fallbacks, 0);
  EXPECT_GT(failures, 0);
}

}  // namespace
}  // namespace nftproxy::dp
