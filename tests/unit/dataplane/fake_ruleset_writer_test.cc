// The fake writer refuses what the kernel would refuse, atomically.
#include "tests/unit/dataplane/fake_ruleset_writer.h"

#include <gtest/gtest.h>

#include "dataplane/ruleset.h"

namespace nftproxy::dp::testing {
namespace {

IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

Service Web(const char* name = "web") {
  Service s;
  s.ns = "default";
  s.name = name;
  s.cluster_ips = {Ip("198.19.0.10")};
  s.lb_ips = {Ip("198.51.100.1")};
  s.lb_source_ranges = {*Cidr::Parse("192.168.0.0/16")};
  ServicePort p;
  p.port = 80;
  p.node_port = 30080;
  p.backends = {{Ip("10.0.0.2"), 8080, 1}, {Ip("10.0.0.3"), 8080, 1}};
  s.ports = {p};
  return s;
}

class FakeWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Model m;
    m.services = {Web()};
    base_ = Compile(m, "t");
    ASSERT_TRUE(fake_.CommitFull(base_, nullptr).ok());
  }
  // Commits and expects a refusal with `err` in its message, state unchanged.
  void ExpectRefused(const Ruleset& removed, const Ruleset& added, const char* err) {
    const Ruleset before = fake_.state();
    absl::Status s = fake_.CommitDelta("t", base_.shards, removed, added, nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(std::string(s.message()).find(err), std::string::npos) << s;
    EXPECT_EQ(RulesetDifference(fake_.state(), before), "");
  }

  FakeRulesetWriter fake_;
  Ruleset base_;
};

TEST_F(FakeWriterTest, HoldsWhatAFullCommitWrote) {
  EXPECT_TRUE(fake_.exists());
  EXPECT_EQ(RulesetDifference(fake_.state(), base_), "");
  EXPECT_EQ(fake_.full_commits(), 1);
}

TEST_F(FakeWriterTest, AppliesACorrectDiff) {
  Service changed = Web();
  changed.ports[0].backends.pop_back();
  changed.lb_source_ranges.clear();
  Service other = Web("other");
  other.lb_ips.clear();
  other.ports[0].port = 81;
  other.ports[0].node_port = 30081;
  other.ports[0].backends.push_back({Ip("10.0.0.4"), 8080, 1});
  Model m;
  m.services = {other, changed};
  const Ruleset to = Compile(m, "t", &base_);
  Ruleset removed, added;
  Diff(base_, to, &removed, &added);
  // The address sets are the caller's (reference counts): one new endpoint.
  added.hairpin[Ip("10.0.0.4")] = 1;
  const absl::Status s = fake_.CommitDelta("t", base_.shards, removed, added, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(RulesetDifference(fake_.state(), to), "");
}

TEST_F(FakeWriterTest, RefusesDeletingWhatIsMissing) {
  Ruleset removed, added;
  removed.vmap[VmapKey{Ip("198.19.0.99"), L4Proto::kTcp, 80}] = VmapTarget{"svc4/x", "service x"};
  ExpectRefused(removed, added, "No such file");
  removed = Ruleset{};
  removed.backends[0][kTicketBit | 77] = Interval{kTicketBit | 78, Ip("10.0.0.9"), 1};
  ExpectRefused(removed, added, "No such file");
  removed = Ruleset{};
  removed.cluster_ips[Ip("198.19.0.99")] = 1;
  ExpectRefused(removed, added, "No such file");
  removed = Ruleset{};
  removed.chains["svc4/default/nope/tcp/80"].owner = "service default/nope";
  ExpectRefused(removed, added, "No such file");
}

TEST_F(FakeWriterTest, RefusesAddingWhatExists) {
  Ruleset removed, added;
  added.vmap = base_.vmap;
  ExpectRefused(removed, added, "File exists");
  added = Ruleset{};
  added.cluster_ips[Ip("198.19.0.10")] = 1;
  ExpectRefused(removed, added, "File exists");
  added = Ruleset{};
  // Overlaps the first interval of the service.
  const uint32_t first = base_.backends[0].begin()->first;
  added.backends[0][first + 1] = Interval{first + 2, Ip("10.0.0.9"), 1};
  ExpectRefused(removed, added, "File exists");
}

TEST_F(FakeWriterTest, RefusesCreatingAChainTwice) {
  Ruleset removed, added;
  added.chains["svc4/default/web/tcp/80"] = base_.chains.at("svc4/default/web/tcp/80");
  ExpectRefused(removed, added, "File exists");
  // A shard that exists already.
  added = Ruleset{};
  Ruleset none;
  const Ruleset before = fake_.state();
  added.shards = 1;
  absl::Status s = fake_.CommitDelta("t", 0, none, added, nullptr);
  EXPECT_NE(std::string(s.message()).find("File exists"), std::string::npos) << s;
  EXPECT_EQ(RulesetDifference(fake_.state(), before), "");
}

TEST_F(FakeWriterTest, RefusesPointingAtAMissingChain) {
  Ruleset removed, added;
  added.vmap[VmapKey{Ip("198.19.0.99"), L4Proto::kTcp, 80}] = VmapTarget{"svc4/missing", "service x"};
  ExpectRefused(removed, added, "No such file");
  added = Ruleset{};
  Chain& c = added.chains["ext4/default/new/tcp/80"];
  c.kind = ChainKind::kExt;
  Rule r;
  r.verdict = Rule::Verdict::kGoto;
  r.target = "svc4/missing";
  c.rules.push_back(r);
  ExpectRefused(removed, added, "No such file");
  // A pick chain of a shard that does not exist.
  added = Ruleset{};
  Chain& p = added.chains["svc4/default/far/tcp/80"];
  r.target = PickChainName(Family::kV4, 3);
  p.rules.push_back(r);
  ExpectRefused(removed, added, "No such file");
}

TEST_F(FakeWriterTest, RefusesABackendsMapBeforeItsShard) {
  Ruleset removed, added;
  const uint32_t far = kTicketBit | (600u << kIndexShift);  // shard 2
  added.backends[0][far] = Interval{far + 10, Ip("10.0.0.9"), 1};
  ExpectRefused(removed, added, "No such file");
}

TEST_F(FakeWriterTest, RefusesDeletingAReferencedChain) {
  // The ext chain goes while the fw chain and the LB element still go to it.
  Ruleset removed, added;
  removed.chains["ext4/default/web/tcp/80"] = base_.chains.at("ext4/default/web/tcp/80");
  ExpectRefused(removed, added, "Device or resource busy");
}

TEST_F(FakeWriterTest, RefusesFlushingAMissingChain) {
  Ruleset removed, added;
  Chain c;
  c.owner = "service default/nope";
  removed.chains["svc4/default/nope/tcp/80"] = c;
  added.chains["svc4/default/nope/tcp/80"] = c;
  ExpectRefused(removed, added, "No such file");
}

TEST_F(FakeWriterTest, RefusesAMissingTable) {
  Ruleset removed, added;
  fake_.DropTable();
  absl::Status s = fake_.CommitDelta("t", base_.shards, removed, added, nullptr);
  EXPECT_NE(std::string(s.message()).find("No such file"), std::string::npos) << s;
  EXPECT_TRUE(fake_.CommitFull(base_, nullptr).ok());
}

TEST_F(FakeWriterTest, FailsOnDemandAndChangesNothing) {
  fake_.FailNext(2);
  Ruleset removed, added;
  EXPECT_EQ(fake_.CommitDelta("t", base_.shards, removed, added, nullptr).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fake_.CommitFull(Ruleset{}, nullptr).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(RulesetDifference(fake_.state(), base_), "");
  EXPECT_TRUE(fake_.CommitDelta("t", base_.shards, removed, added, nullptr).ok());
}

}  // namespace
}  // namespace nftproxy::dp::testing
