// Netlink faults that the real kernel cannot be made to produce on demand,
// injected behind the NetlinkSocket interface while NftDataplane writes a
// real table (in a private network namespace): sendmsg() failing with
// ENOBUFS, EINTR or EAGAIN; the replies lost (ENOBUFS), interrupted (EINTR)
// or truncated; a commit the kernel aborted for memory. After every step
// `nft list table` must be what the dataplane says is installed (or, when a
// fault hid a commit, exactly the old or the new table: never a part of a
// batch), and the next fault-free write must converge.
//
// Short reads: netlink never splits a datagram, so a "short read" is a
// datagram cut to the caller's buffer (MSG_TRUNC) or a partial message; the
// socket reports the real length (recv with MSG_TRUNC) and SendBatch treats
// a truncated reply as a lost one. Both are injected here.
//
// Needs root (fails under CI=true without it).
#include <errno.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <sched.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/integration/kernel_lab.h"
#include "dataplane/dataplane.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/nft_dataplane.h"
#include "dataplane/nft_writer.h"

namespace nftproxy::dp {
namespace {

using kernel_lab::RequireNetns;
using kernel_lab::Shell;

// ---------------------------------------------------------------------------
// The faults of one batch (one SendBatch: a sendmsg and the reads after it).
struct Fault {
  // sendmsg() fails this many times with send_errno before it works.
  int send_errno = 0;
  int send_failures = 0;
  // The kernel aborts the commit with this errno: nothing is sent, and the
  // reply is the one nfnetlink gives when its commit fails (an NLMSG_ERROR
  // for the batch's first message).
  int abort_errno = 0;
  // The first read after the batch fails with this errno (the replies stay
  // queued, except for ENOBUFS when nothing was queued anyway).
  int recv_errno = 0;
  // The first real reply is handed out cut to this many bytes (-1: whole).
  int truncate_to = -1;
  // A datagram cut inside its first message is handed out first.
  bool partial_datagram = false;
  // A datagram larger than the reader's buffer (recv with MSG_TRUNC gives
  // its real length) is handed out first.
  bool oversized_datagram = false;
};

class FaultySocket final : public NetlinkSocket {
 public:
  explicit FaultySocket(std::unique_ptr<NetlinkSocket> real) : real_(std::move(real)) {}

  // The faults of the next batches, in order; a batch without one works.
  void Script(std::vector<Fault> faults) { script_.assign(faults.begin(), faults.end()); }
  int batches() const { return batches_; }
  int delivered() const { return delivered_; }

  absl::Status ReserveSend(size_t bytes) override { return real_->ReserveSend(bytes); }

  ssize_t Send(const iovec* iov, size_t iovcnt) override {
    const auto* first = static_cast<const nlmsghdr*>(iov[0].iov_base);
    if (!started_ || first->nlmsg_seq != batch_seq_) {  // a new batch (a retry has the same seq)
      started_ = true;
      batch_seq_ = first->nlmsg_seq;
      ++batches_;
      cur_ = Fault{};
      if (!script_.empty()) {
        cur_ = script_.front();
        script_.pop_front();
      }
      send_failed_ = 0;
      injected_.clear();
    }
    if (send_failed_ < cur_.send_failures) {
      ++send_failed_;
      errno = cur_.send_errno;
      return -1;
    }
    recv_fault_ = cur_.recv_errno;
    truncate_ = cur_.truncate_to;
    if (cur_.partial_datagram) injected_.push_back(std::string(10, '\x7f'));
    if (cur_.oversized_datagram) injected_.push_back("oversized");
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
    if (cur_.abort_errno != 0) {
      std::string reply(NLMSG_LENGTH(sizeof(nlmsgerr)), '\0');
      auto* nlh = reinterpret_cast<nlmsghdr*>(reply.data());
      nlh->nlmsg_len = static_cast<uint32_t>(reply.size());
      nlh->nlmsg_type = NLMSG_ERROR;
      nlh->nlmsg_flags = NLM_F_CAPPED;
      nlh->nlmsg_seq = first->nlmsg_seq;
      auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(nlh));
      err->error = -cur_.abort_errno;
      err->msg = *first;
      injected_.push_back(reply);
      return static_cast<ssize_t>(total);  // "sent"; the kernel never saw it
    }
    ++delivered_;
    return real_->Send(iov, iovcnt);
  }

  ssize_t Receive(void* buf, size_t len) override {
    if (recv_fault_ != 0) {
      errno = recv_fault_;
      recv_fault_ = 0;
      return -1;
    }
    if (!injected_.empty()) {
      std::string d = injected_.front();
      injected_.pop_front();
      if (d == "oversized") {
        memset(buf, 0, len);
        return static_cast<ssize_t>(len + 100);
      }
      const size_t n = std::min(len, d.size());
      memcpy(buf, d.data(), n);
      return static_cast<ssize_t>(n);
    }
    ssize_t n = real_->Receive(buf, len);
    if (n > 0 && truncate_ >= 0 && n > truncate_) {
      n = truncate_;
      truncate_ = -1;
    }
    return n;
  }

 private:
  std::unique_ptr<NetlinkSocket> real_;
  std::deque<Fault> script_;
  bool started_ = false;
  uint32_t batch_seq_ = 0;
  Fault cur_;
  int send_failed_ = 0;
  int recv_fault_ = 0;
  int truncate_ = -1;
  std::deque<std::string> injected_;
  int batches_ = 0;
  int delivered_ = 0;
};

class NoFlows final : public FlowFlusher {
 public:
  absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>&) override { return 0; }
};

// ---------------------------------------------------------------------------
using kernel_lab::Normalize;

// Empty when equal; else the lines only one side has.
std::string Diff(const std::string& expected, const std::string& kernel) {
  const std::vector<std::string> e = Normalize(expected), k = Normalize(kernel);
  if (e == k) return "";
  std::map<std::string, int> count;
  for (const std::string& l : e) ++count[l];
  for (const std::string& l : k) --count[l];
  std::string out;
  int shown = 0;
  for (const auto& [l, c] : count) {
    if (c == 0 || shown++ >= 20) continue;
    absl::StrAppend(&out, c > 0 ? "  - only expected: " : "  + only kernel:   ", l, "\n");
  }
  return out.empty() ? "  (same lines, another order)\n" : out;
}

Service Svc(int i, int backend_base = 0) {
  return kernel_lab::TestService(i, 3, 0x0a000000u + 2 + static_cast<uint32_t>(backend_base));
}

constexpr int kServices = 20;

// A change with every kind of delta: new endpoints for one service, a new
// service (new chain, index, cluster IP) and a removed one.
ModelChange TheChange() {
  ModelChange c;
  c.upserts = {Svc(3, 1000), Svc(kServices)};
  c.removes = {"default/svc-0005"};
  return c;
}

// What the next write after the faulted one changes (unrelated services).
ModelChange NextChange() {
  ModelChange c;
  c.upserts = {Svc(7, 2000), Svc(kServices + 1)};
  return c;
}

struct Case {
  const char* name;
  std::vector<Fault> faults;  // per batch of the faulted Update: the delta, then its full fallback
  bool kernel_refuses = false;  // an element the delta adds already exists (EEXIST)
  bool ok = true;               // the faulted Update succeeds (by retrying, or by its full fallback)
  absl::StatusCode code = absl::StatusCode::kOk;
  bool full = false;            // ... and had to replace the whole table
  bool may_have_committed = false;  // it failed, and the kernel may hold the change
};

Fault SendErr(int e, int times) {
  Fault f;
  f.send_errno = e;
  f.send_failures = times;
  return f;
}
Fault RecvErr(int e) {
  Fault f;
  f.recv_errno = e;
  return f;
}
Fault Abort(int e) {
  Fault f;
  f.abort_errno = e;
  return f;
}
Fault Truncate(int bytes) {
  Fault f;
  f.truncate_to = bytes;
  return f;
}
Fault Partial() {
  Fault f;
  f.partial_datagram = true;
  return f;
}
Fault Oversized() {
  Fault f;
  f.oversized_datagram = true;
  return f;
}

using C = absl::StatusCode;

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      // (a) sendmsg() fails: nothing reached the kernel.
      {"send EINTR x3 is retried", {SendErr(EINTR, 3)}, false, true, C::kOk, false},
      {"send EAGAIN x3 is retried", {SendErr(EAGAIN, 3)}, false, true, C::kOk, false},
      {"send ENOBUFS once: full fallback", {SendErr(ENOBUFS, 1)}, false, true, C::kOk, true},
      {"send ENOBUFS twice: error", {SendErr(ENOBUFS, 1), SendErr(ENOBUFS, 1)}, false, false, C::kUnavailable},
      {"send EINTR forever: error", {SendErr(EINTR, 1000), SendErr(EINTR, 1000)}, false, false, C::kUnavailable},
      // (b) the batch was sent; its replies are lost or interrupted.
      {"recv ENOBUFS once: unknown, full fallback", {RecvErr(ENOBUFS)}, false, true, C::kOk, true},
      {"recv ENOBUFS twice: unknown, error", {RecvErr(ENOBUFS), RecvErr(ENOBUFS)}, false, false, C::kUnknown,
       false, true},
      {"recv EINTR on a committed batch", {RecvErr(EINTR)}, false, true, C::kOk, false},
      {"recv EINTR before a real refusal", {RecvErr(EINTR)}, true, true, C::kOk, true},
      {"recv EINTR before a real refusal, then abort", {RecvErr(EINTR), Abort(ENOMEM)}, true, false,
       C::kFailedPrecondition},
      // (c) short reads: a truncated datagram.
      {"partial datagram once", {Partial()}, false, true, C::kOk, true},
      {"oversized datagram twice", {Oversized(), Oversized()}, false, false, C::kUnknown, false, true},
      {"real refusal, its reply truncated", {Truncate(12)}, true, true, C::kOk, true},
      {"real refusal, its reply truncated, then abort", {Truncate(12), Abort(ENOMEM)}, true, false,
       C::kFailedPrecondition},
      // (d) the kernel aborted the commit (ENOMEM): nothing applied.
      {"aborted commit once: full fallback", {Abort(ENOMEM)}, false, true, C::kOk, true},
      {"aborted commit twice: error", {Abort(ENOMEM), Abort(ENOMEM)}, false, false, C::kFailedPrecondition},
      // A refusal with every reply read (the stray element is gone with the
      // full fallback's new table).
      {"real refusal: full fallback", {}, true, true, C::kOk, true},
  };
  return cases;
}

class NetlinkFault : public ::testing::TestWithParam<int> {};

std::string ListTable(const std::string& table) { return Shell("nft list table inet " + table); }

TEST_P(NetlinkFault, KernelEqualsInstalledAndTheNextWriteConverges) {
  RequireNetns();
  if (HasFatalFailure() || IsSkipped()) return;
  const Case& c = Cases()[GetParam()];
  SCOPED_TRACE(c.name);
  const std::string table = absl::StrCat("npxfault", GetParam());
  auto opened = OpenNetfilterSocket();
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto socket = std::make_unique<FaultySocket>(std::move(*opened));
  FaultySocket* faults = socket.get();
  std::unique_ptr<NftDataplane> dp =
      NftDataplane::Create(table, std::make_unique<NftWriter>(std::move(socket)), std::make_unique<NoFlows>());

  // 1. The first model, fault-free.
  Model model;
  for (int i = 0; i < kServices; ++i) model.services.push_back(Svc(i));
  ApplyResult r;
  ASSERT_TRUE(dp->Apply(model, &r).ok());
  ASSERT_TRUE(r.full);
  const std::string old_installed = dp->Installed();
  ASSERT_EQ(Diff(old_installed, ListTable(table)), "");

  // 2. A change while the faults fire.
  const ModelChange change = TheChange();
  if (c.kernel_refuses) {
    // The new service's cluster IP, already in the set: NEWSETELEM with
    // NLM_F_EXCL is refused with EEXIST (a real kernel error reply).
    const std::string out = Shell(absl::StrCat("nft add element inet ", table, " cluster-ips4 { 198.19.0.",
                                               kServices + 1, " }"));
    ASSERT_EQ(out, "") << out;
  }
  const std::string kernel_before = ListTable(table);
  faults->Script(c.faults);
  const int batches_before = faults->batches();
  absl::Status s = dp->Update(change, &r);
  printf("[fault] %-45s -> %s (%d batches)\n", c.name, s.ToString().c_str(), faults->batches() - batches_before);
  const std::string kernel_after = ListTable(table);
  if (c.ok) {
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(r.full, c.full);
    EXPECT_NE(dp->Installed(), old_installed);
    EXPECT_EQ(Diff(dp->Installed(), kernel_after), "") << "kernel != installed after the faulted write";
  } else {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_EQ(dp->Installed(), old_installed) << "a failed write must leave the installed model alone";
    if (!c.may_have_committed) {
      EXPECT_EQ(kernel_after, kernel_before) << "a batch that was not applied changed the kernel";
      // (A refused change leaves the stray element; nothing else.)
      if (!c.kernel_refuses) {
        EXPECT_EQ(Diff(dp->Installed(), kernel_after), "");
      }
    }
  }

  // 3. The next write, fault-free: the same change after a failure (the
  // engine rolled it back; the client retries), another one after a success.
  faults->Script({});
  const ModelChange next = s.ok() ? NextChange() : change;
  const std::string installed_before_next = dp->Installed();
  ApplyResult r2;
  absl::Status s2 = dp->Update(next, &r2);
  ASSERT_TRUE(s2.ok()) << s2;
  const std::string kernel_next = ListTable(table);
  EXPECT_EQ(Diff(dp->Installed(), kernel_next), "") << "the next fault-free write did not converge";
  if (!s.ok()) {
    // A failure whose batch may have been applied is repaired by one full
    // commit (needs_full_); one that applied nothing (a failed send, a
    // refusal) is followed by a delta again, unless the kernel refuses that
    // delta too (the stray element) and its full fallback repairs it.
    EXPECT_EQ(r2.full, c.may_have_committed || c.kernel_refuses) << s;
    if (c.may_have_committed) {
      // Never half-applied: the kernel held the old table or the new one.
      const bool old_table = Diff(installed_before_next, kernel_after).empty();
      const bool new_table = Diff(dp->Installed(), kernel_after).empty();
      EXPECT_TRUE(old_table || new_table) << "a batch was half-applied:\n"
                                          << Diff(dp->Installed(), kernel_after);
    }
  }
  // And a delta after that is a delta again.
  ModelChange last;
  last.removes = {"default/svc-0009"};
  ApplyResult r3;
  ASSERT_TRUE(dp->Update(last, &r3).ok());
  EXPECT_FALSE(r3.full);
  EXPECT_EQ(Diff(dp->Installed(), ListTable(table)), "");
  Shell("nft delete table inet " + table);
}

INSTANTIATE_TEST_SUITE_P(Faults, NetlinkFault, ::testing::Range(0, static_cast<int>(Cases().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           std::string n = Cases()[info.param].name;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace nftproxy::dp

int main(int argc, char** argv) { return nftproxy::kernel_lab::Main(argc, argv); }
