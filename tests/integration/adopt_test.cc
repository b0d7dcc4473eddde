// Adopting the table a previous run left (dataplane/adopt.h), against the
// real kernel in a private network namespace: a new NftDataplane reads the
// table back, keeps its tickets and affinity entries, writes only what
// differs, and falls back to a full replacement when the fixed part
// differs; KernelDifferences (explain --kernel) names every object where
// the kernel differs. Needs root (fails under CI=true without it).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "dataplane/nft_dataplane.h"
#include "dataplane/nft_reader.h"
#include "dataplane/ruleset.h"
#include "tests/integration/kernel_lab.h"

namespace nftproxy::dp {
namespace {

using kernel_lab::RequireNetns;
using kernel_lab::Shell;
using kernel_lab::TestService;
using kernel_lab::V4;

constexpr char kTable[] = "adopttest";

std::string Nft(const std::string& args) { return Shell(absl::StrCat("nft ", args)); }
std::string Listing() { return Nft(absl::StrCat("list table inet ", kTable)); }

// Services 0..n-1, the even ones with ClientIP affinity.
Model TheModel(int n) {
  Model m;
  for (int i = 0; i < n; ++i) {
    Service s = TestService(i, 3, 0x0a000002u);
    if (i % 2 == 0) s.affinity_timeout_s = 600;
    m.services.push_back(s);
  }
  return m;
}

// Edits the table as someone else might: a flushed service chain, a
// deleted frontend, an element nftproxy never wrote. nft's output ("" when
// all went well).
std::string Damage() {
  return Nft(absl::StrCat("flush chain inet ", kTable, " svc4/default/svc-0003/tcp/80")) +
         Nft(absl::StrCat("delete element inet ", kTable, " service-ips4 { 198.19.0.6 . tcp . 80 }")) +
         Nft(absl::StrCat("add element inet ", kTable, " cluster-ips4 { 203.0.113.9 }"));
}

std::unique_ptr<NftDataplane> Start() {
  auto dp = NftDataplane::Create(kTable);
  EXPECT_TRUE(dp.ok()) << dp.status();
  return dp.ok() ? std::move(*dp) : nullptr;
}

std::vector<std::string> Differences(const NftDataplane& dp) {
  auto snap = dp.Snapshot();
  if (snap == nullptr) return {"nothing committed"};
  absl::StatusOr<std::vector<std::string>> d = snap->KernelDifferences();
  if (!d.ok()) return {std::string(d.status().message())};
  return *d;
}

class Adopt : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireNetns();
    if (HasFatalFailure() || IsSkipped()) return;
    Nft(absl::StrCat("delete table inet ", kTable));
  }
};

TEST_F(Adopt, SameModelWritesNothingAndKeepsTicketsAndAffinityEntries) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  const Model model = TheModel(40);
  auto first = Start();
  ApplyResult r;
  ASSERT_TRUE(first->Apply(model, &r).ok());
  EXPECT_TRUE(r.full);
  EXPECT_FALSE(r.adopted);
  EXPECT_EQ(Differences(*first), std::vector<std::string>{});
  // A client's remembered ticket, as the packet path would have written it.
  const uint32_t index = first->indexes().at("default/svc-0000/tcp/80");
  const std::string entry = absl::StrFormat("10.9.9.9 . 198.19.0.1 . tcp . 80 timeout 10m : 0x%08x",
                                            kTicketBit | (index << kIndexShift) | 7);
  ASSERT_EQ(Nft(absl::StrCat("add element inet ", kTable, " affinity4 { ", entry, " }")), "");
  const std::string before = Listing();
  first.reset();  // the run ends; its table stays

  auto second = Start();
  ASSERT_TRUE(second->Apply(model, &r).ok());
  EXPECT_TRUE(r.adopted);
  EXPECT_FALSE(r.full);
  EXPECT_EQ(r.messages, 0u) << "an unchanged table was written to";
  EXPECT_EQ(second->indexes().at("default/svc-0000/tcp/80"), index);
  const std::string after = Listing();
  EXPECT_NE(after.find("10.9.9.9 . 198.19.0.1 . tcp . 80"), std::string::npos) << "the affinity entry was lost:\n"
                                                                                 << after;
  EXPECT_EQ(kernel_lab::Normalize(after.substr(0, after.find("map affinity4"))),
            kernel_lab::Normalize(before.substr(0, before.find("map affinity4"))));
}

TEST_F(Adopt, DamageAndChangesWhileDownAreTheOnlyThingsWritten) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  Model model = TheModel(40);
  auto first = Start();
  ApplyResult r;
  ASSERT_TRUE(first->Apply(model, &r).ok());
  const IndexMap before = first->indexes();
  first.reset();
  // Someone edits the table while no server runs.
  ASSERT_EQ(Damage(), "");
  // The desired state moved on too: one service gone, one new, one with
  // other endpoints.
  model.services.erase(model.services.begin() + 10);
  model.services.push_back(TestService(40, 3, 0x0a000002u));
  model.services[20] = TestService(21, 2, 0x0a100002u);

  auto second = Start();
  ASSERT_TRUE(second->Apply(model, &r).ok());
  EXPECT_TRUE(r.adopted);
  EXPECT_GT(r.messages, 0u);
  EXPECT_EQ(Differences(*second), std::vector<std::string>{});
  for (const auto& [key, index] : second->indexes()) {
    if (before.count(key)) {
      EXPECT_EQ(index, before.at(key)) << key << " got another ticket";
    }
  }
  EXPECT_EQ(second->indexes().count("default/svc-0010/tcp/80"), 0u);
  EXPECT_EQ(Listing().find("203.0.113.9"), std::string::npos);

  // Damage while this run serves: KernelDifferences names each object.
  ASSERT_EQ(Damage(), "");
  const std::string diffs = absl::StrJoin(Differences(*second), "\n");
  EXPECT_NE(diffs.find("chain svc4/default/svc-0003/tcp/80: rule 1: the kernel has (none)"), std::string::npos)
      << diffs;
  EXPECT_NE(diffs.find("element service-ips4 { 198.19.0.6 . tcp . 80 : goto svc4/default/svc-0005/tcp/80 }: "
                       "missing in the kernel"),
            std::string::npos)
      << diffs;
  EXPECT_NE(diffs.find("element cluster-ips4 { 203.0.113.9 }: the kernel has it"), std::string::npos) << diffs;
}

TEST_F(Adopt, OtherNodeSettingsReplaceTheTable) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  Model model = TheModel(8);
  auto first = Start();
  ApplyResult r;
  ASSERT_TRUE(first->Apply(model, &r).ok());
  first.reset();
  model.node.cluster_cidrs.push_back(Cidr{V4(0x0a400000u), 10});
  auto second = Start();
  ASSERT_TRUE(second->Apply(model, &r).ok());
  EXPECT_FALSE(r.adopted);
  EXPECT_TRUE(r.full);
  EXPECT_EQ(Differences(*second), std::vector<std::string>{});
  EXPECT_NE(Listing().find("10.64.0.0/10"), std::string::npos);
}

// Endpoint counters, more than ReadTable dumps (kCounterDumpMax): the
// table's counters are read by name, adoption keeps them all, and a counter
// removed behind nftproxy's back is named by KernelDifferences.
TEST_F(Adopt, ManyEndpointCountersAreReadByNameAndKept) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  Model model;
  model.node.counters = true;
  model.node.endpoint_counters = true;
  for (int i = 0; i < 2100; ++i) model.services.push_back(TestService(i, 10, 0x0a000002u));
  const Ruleset want = Compile(model, kTable);
  ASSERT_GT(want.counters.size(), kCounterDumpMax);
  auto first = Start();
  ApplyResult r;
  ASSERT_TRUE(first->Apply(model, &r).ok());
  EXPECT_EQ(Differences(*first), std::vector<std::string>{});
  first.reset();

  auto second = Start();
  ASSERT_TRUE(second->Apply(model, &r).ok());
  EXPECT_TRUE(r.adopted);
  EXPECT_EQ(r.messages, 0u) << "an unchanged table was written to";
  const std::string counters = Nft(absl::StrCat("list counters table inet ", kTable));
  size_t objects = 0;
  for (size_t at = counters.find("\tcounter "); at != std::string::npos; at = counters.find("\tcounter ", at + 1)) {
    ++objects;
  }
  EXPECT_EQ(objects, want.counters.size());
  // One endpoint's map element and counter go behind nftproxy's back.
  const std::string name = EndpointCounterName("default/svc-0007/tcp/80", V4(0x0a000002u + 7 * 4 + 3), 8080);
  ASSERT_EQ(want.counters.count(name), 1u);
  uint32_t first_ticket = 0;
  Interval gone;
  for (const auto& [ticket, iv] : want.backends[0]) {
    if (iv.counter == name) {
      first_ticket = ticket;
      gone = iv;
    }
  }
  ASSERT_NE(first_ticket, 0u);
  const uint32_t shard = ShardOfTicket(first_ticket);
  ASSERT_EQ(Nft(absl::StrFormat("delete element inet %s %s { 0x%08x-0x%08x }", kTable, EpConnsMapName(Family::kV4, shard),
                                first_ticket, gone.last)),
            "");
  ASSERT_EQ(Nft(absl::StrCat("delete counter inet ", kTable, " ", name)), "");
  const std::vector<std::string> diff = Differences(*second);
  EXPECT_NE(std::find(diff.begin(), diff.end(), absl::StrCat("counter ", name, ": missing in the kernel")), diff.end())
      << absl::StrJoin(diff, "\n");
}

}  // namespace
}  // namespace nftproxy::dp

int main(int argc, char** argv) { return nftproxy::kernel_lab::Main(argc, argv); }
