// NftWriter against the real kernel, in a private network namespace: a
// whole table is built in two parts at once and sent as one transaction; a
// kernel error in either part names the service that caused it, and a
// refused batch changes nothing. Needs root (fails under CI=true without it).
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/integration/kernel_lab.h"
#include "dataplane/dataplane.h"
#include "dataplane/nft_writer.h"
#include "dataplane/ruleset.h"

namespace nftproxy::dp {
namespace {

using kernel_lab::RequireNetns;
using kernel_lab::Shell;

using kernel_lab::V4;

// n services with 4 endpoints each: n / 256 + 1 backends shards.
Model Services(int n) {
  Model m;
  for (int i = 0; i < n; ++i) m.services.push_back(kernel_lab::TestService(i, 4, 0xc6120000u + 2, 4000));
  return m;
}

// An interval that overlaps the first one of `svc`'s port: the kernel
// refuses it (the element exists).
void AddOverlap(Ruleset* rs, const std::string& svc) {
  const uint32_t index = rs->indexes.at("default/" + svc + "/tcp/80");
  const uint32_t first = kTicketBit | (index << kIndexShift);
  ASSERT_TRUE(rs->backends[0].count(first)) << svc;
  rs->backends[0][first + 1] = Interval{first + 2, V4(0xc6120063u), 9999};
}

TEST(Writer, KernelErrorsInEitherPartNameTheirServiceAndChangeNothing) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  auto writer = NftWriter::Create();
  ASSERT_TRUE(writer.ok()) << writer.status();
  const Model model = Services(1200);  // 5 shards: the second part takes the last ones
  const Ruleset good = Compile(model, "npxwriter");
  ASSERT_GE(good.shards, 4u);
  CommitStats stats;
  ASSERT_TRUE((*writer)->CommitFull(good, &stats).ok());
  EXPECT_GT(stats.messages, 1200u);
  const std::string before = Shell("nft list table inet npxwriter");
  ASSERT_NE(before.find("svc4/default/svc-1199/tcp/80"), std::string::npos) << before.substr(0, 2000);
  // The first service's elements are built by the first part, the last
  // one's by the second; each error must name its own service.
  for (const char* svc : {"svc-0000", "svc-1199"}) {
    SCOPED_TRACE(svc);
    Ruleset bad = good;
    AddOverlap(&bad, svc);
    absl::Status s = (*writer)->CommitFull(bad, &stats);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    printf("[writer] %s\n", std::string(s.message()).c_str());
    EXPECT_NE(std::string(s.message()).find(absl::StrCat("service default/", svc)), std::string::npos) << s;
    EXPECT_NE(std::string(s.message()).find("kernel refused the change"), std::string::npos) << s;
    // The service is also named apart from the message, for the server.
    EXPECT_EQ(ServiceOfError(s).value_or("<none>"), absl::StrCat("default/", svc)) << s;
    EXPECT_EQ(Shell("nft list table inet npxwriter"), before) << "a refused batch must change nothing";
  }
  Shell("nft delete table inet npxwriter");
}

}  // namespace
}  // namespace nftproxy::dp

int main(int argc, char** argv) { return nftproxy::kernel_lab::Main(argc, argv); }
