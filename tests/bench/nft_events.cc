#include "tests/bench/nft_events.h"

#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/bench/lab.h"

namespace npxbench {
namespace {

// Number of elements in a NEWSETELEM/DELSETELEM message: the entries of its
// NFTA_SET_ELEM_LIST_ELEMENTS nest.
int CountElements(const nlmsghdr* nh) {
  const size_t hdr = NLMSG_LENGTH(sizeof(nfgenmsg));
  if (nh->nlmsg_len < hdr) return 1;
  const char* p = reinterpret_cast<const char*>(nh) + NLMSG_ALIGN(hdr);
  const char* end = reinterpret_cast<const char*>(nh) + nh->nlmsg_len;
  while (p + sizeof(nlattr) <= end) {
    const nlattr* a = reinterpret_cast<const nlattr*>(p);
    if (a->nla_len < sizeof(nlattr) || p + a->nla_len > end) break;
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_SET_ELEM_LIST_ELEMENTS) {
      int n = 0;
      const char* q = p + NLA_HDRLEN;
      const char* qend = p + a->nla_len;
      while (q + sizeof(nlattr) <= qend) {
        const nlattr* e = reinterpret_cast<const nlattr*>(q);
        if (e->nla_len < sizeof(nlattr)) break;
        ++n;
        q += NLA_ALIGN(e->nla_len);
      }
      return n > 0 ? n : 1;
    }
    p += NLA_ALIGN(a->nla_len);
  }
  return 1;
}

}  // namespace

NftEventCounter::~NftEventCounter() { Close(); }

void NftEventCounter::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status NftEventCounter::Open(const std::string& netns) {
  Close();
  absl::Status status;
  // The socket belongs to the namespace of the thread that creates it.
  std::thread t([&] {
    if (status = Lab::Get().EnterNetns(netns); !status.ok()) return;
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd_ < 0) {
      status = absl::InternalError(absl::StrCat("netlink socket: ", strerror(errno)));
      return;
    }
    int size = 64 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    int group = NFNLGRP_NFTABLES;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
        setsockopt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0) {
      status = absl::InternalError(absl::StrCat("netlink subscribe: ", strerror(errno)));
    }
  });
  t.join();
  return status;
}

NftEventCounter::Counts NftEventCounter::Drain() {
  Counts c;
  if (fd_ < 0) return c;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ENOBUFS) {
        c.overflow = true;
        continue;
      }
      break;
    }
    int len = static_cast<int>(n);
    for (const nlmsghdr* nh = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(nh, len);
         nh = NLMSG_NEXT(nh, len)) {
      if ((nh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) continue;
      const int msg = nh->nlmsg_type & 0xff;
      if (msg == NFT_MSG_NEWGEN) {
        ++c.commits;
      } else if (msg == NFT_MSG_NEWSETELEM || msg == NFT_MSG_DELSETELEM) {
        c.objects += CountElements(nh);
      } else {
        ++c.objects;
      }
    }
  }
  return c;
}

}  // namespace npxbench
