// The conntrack clean-up (dataplane/conntrack.cc, raw ctnetlink) against the
// real kernel, in a private network namespace: entries are made with the
// `conntrack` tool, DeleteUdpFlowsTo must delete exactly the DNATed UDP
// entries whose reply comes from a target (either family, any zone, in a
// dump of several reads) and keep the rest. Needs root (fails under CI=true
// without it).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dataplane/conntrack.h"
#include "tests/integration/kernel_lab.h"

namespace nftproxy::dp {
namespace {

using kernel_lab::RequireNetns;
using kernel_lab::Shell;

FlowTarget Target(const char* addr, uint16_t port) {
  FlowTarget t;
  t.addr = *IpAddr::Parse(addr);
  t.port = port;
  return t;
}

// conntrack -I with a timeout long enough for the test; "" on success.
std::string Insert(const std::string& args) {
  const std::string out = Shell("conntrack -I -t 300 " + args);
  return absl::StrContains(out, "1 flow entries have been created") ? "" : out;
}

std::vector<std::string> Listing() {
  std::vector<std::string> lines;
  for (const char* fam : {"ipv4", "ipv6"}) {
    for (absl::string_view l : absl::StrSplit(Shell(absl::StrCat("conntrack -L -f ", fam)), '\n')) {
      if (absl::StartsWith(l, "udp") || absl::StartsWith(l, "tcp")) lines.emplace_back(l);
    }
  }
  return lines;
}

bool Listed(const std::vector<std::string>& lines, const std::string& what) {
  for (const std::string& l : lines) {
    if (absl::StrContains(l, what)) return true;
  }
  return false;
}

class ConntrackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireNetns();
    if (IsSkipped() || HasFailure()) return;
    // NAT in this namespace, so that entries can be made DNATed.
    ASSERT_EQ(Shell("nft add table ip npxct && nft add chain ip npxct pre '{ type nat hook prerouting priority -100; }' "
                    "&& nft add table ip6 npxct && nft add chain ip6 npxct pre '{ type nat hook prerouting priority -100; }'"),
              "");
    Shell("conntrack -F");
  }
  void TearDown() override {
    Shell("conntrack -F; nft delete table ip npxct; nft delete table ip6 npxct");
  }
};

TEST_F(ConntrackTest, DeletesOnlyDnatedUdpFlowsToTheTargets) {
  if (IsSkipped()) return;
  // Deleted: UDP, DNATed to a target (v4, v6, and in conntrack zone 7).
  ASSERT_EQ(Insert("-p udp -s 198.18.0.1 -d 198.19.0.1 --sport 1000 --dport 53 --dst-nat 198.18.5.5:5353"), "");
  ASSERT_EQ(Insert("-p udp -s fd00:1::2 -d fd00:96::1 --sport 1001 --dport 53 --dst-nat [fd00:5::5]:5353"),
            "");
  ASSERT_EQ(Insert("-p udp -s 198.18.0.1 -d 198.19.0.1 --sport 1002 --dport 53 --zone 7 --dst-nat 198.18.5.5:5353"),
            "");
  // Kept: another endpoint, another port, TCP, not DNATed.
  ASSERT_EQ(Insert("-p udp -s 198.18.0.1 -d 198.19.0.1 --sport 2000 --dport 53 --dst-nat 198.18.5.6:5353"), "");
  ASSERT_EQ(Insert("-p udp -s 198.18.0.1 -d 198.19.0.1 --sport 2001 --dport 53 --dst-nat 198.18.5.5:5354"), "");
  ASSERT_EQ(Insert("-p tcp -s 198.18.0.1 -d 198.19.0.1 --sport 2002 --dport 53 --state ESTABLISHED "
                   "--dst-nat 198.18.5.5:5353"),
            "");
  ASSERT_EQ(Insert("-p udp -s 198.18.0.1 -d 198.18.5.5 --sport 2003 --dport 5353"), "");
  ASSERT_EQ(Listing().size(), 7u) << Shell("conntrack -L");

  absl::StatusOr<int> n = DeleteUdpFlowsTo({Target("198.18.5.5", 5353), Target("fd00:5::5", 5353)});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  const std::vector<std::string> left = Listing();
  EXPECT_EQ(left.size(), 4u) << absl::StrJoin(left, "\n");
  for (const char* kept : {"sport=2000 ", "sport=2001 ", "sport=2002 ", "sport=2003 "}) {
    EXPECT_TRUE(Listed(left, kept)) << kept << " was deleted:\n" << absl::StrJoin(left, "\n");
  }
  // Nothing left to delete; no targets: nothing asked of the kernel.
  n = DeleteUdpFlowsTo({Target("198.18.5.5", 5353), Target("fd00:5::5", 5353)});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0);
  n = DeleteUdpFlowsTo({});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
}

TEST_F(ConntrackTest, ManyEntriesInADumpOfSeveralReads) {
  if (IsSkipped()) return;
  // 400 entries (about 100 KB of dump) to one endpoint, 100 to another.
  std::string script;
  for (int i = 0; i < 500; ++i) {
    absl::StrAppend(&script, "conntrack -I -t 300 -p udp -s 198.18.0.1 -d 198.19.0.1 --sport ", 10000 + i,
                    " --dport 53 --dst-nat 198.18.5.", i < 400 ? 5 : 6, ":5353 2>/dev/null\n");
  }
  Shell(script);
  ASSERT_EQ(Listing().size(), 500u);
  absl::StatusOr<int> n = DeleteUdpFlowsTo({Target("198.18.5.5", 5353)});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 400);
  EXPECT_EQ(Listing().size(), 100u);
}

}  // namespace
}  // namespace nftproxy::dp

int main(int argc, char** argv) { return nftproxy::kernel_lab::Main(argc, argv); }
