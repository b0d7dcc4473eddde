#include "dataplane/netlink_socket.h"

#include "dataplane/dataplane.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"

namespace nftproxy::dp {

static std::vector<const nlattr*> AttrsIn(const char* p, const char* end) {
  std::vector<const nlattr*> out;
  while (mnl_attr_ok(reinterpret_cast<const nlattr*>(p), static_cast<int>(end - p))) {
    const auto* a = reinterpret_cast<const nlattr*>(p);
    out.push_back(a);
    p += MNL_ALIGN(a->nla_len);
  }
  return out;
}

std::vector<const nlattr*> NetlinkAttrs(const nlmsghdr* nlh, size_t offset) {
  const char* begin = static_cast<const char*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  return begin < end ? AttrsIn(begin, end) : std::vector<const nlattr*>{};
}

std::vector<const nlattr*> NestedAttrs(const nlattr* attr) {
  const char* begin = static_cast<const char*>(mnl_attr_get_payload(attr));
  return AttrsIn(begin, begin + mnl_attr_get_payload_len(attr));
}

namespace {

absl::Status SetBuf(int fd, int opt, int size) {
  if (setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size)) < 0) {
    return absl::UnavailableError(absl::StrCat("setsockopt: ", strerror(errno)));
  }
  return absl::OkStatus();
}

class MnlSocket final : public NetlinkSocket {
 public:
  explicit MnlSocket(mnl_socket* nl) : nl_(nl), fd_(mnl_socket_get_fd(nl)) {}
  ~MnlSocket() override { mnl_socket_close(nl_); }

  absl::Status ReserveSend(size_t bytes) override {
    return SetBuf(fd_, SO_SNDBUFFORCE, static_cast<int>(std::min<size_t>(bytes + (1 << 20), INT32_MAX / 2)));
  }

  ssize_t Send(const iovec* iov, size_t iovcnt) override {
    sockaddr_nl snl{};
    snl.nl_family = AF_NETLINK;
    msghdr msg{};
    msg.msg_name = &snl;
    msg.msg_namelen = sizeof(snl);
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = iovcnt;
    return sendmsg(fd_, &msg, 0);
  }

  ssize_t Receive(void* buf, size_t len) override {
    // MSG_DONTWAIT: EAGAIN when nothing is queued. MSG_TRUNC: the datagram's real length, so that SendBatch sees a
    // reply larger than its buffer (netlink never splits a datagram: a
    // short read is a truncated one, never the first part of one).
    return recv(fd_, buf, len, MSG_DONTWAIT | MSG_TRUNC);
  }

 private:
  mnl_socket* nl_;
  int fd_;
};

// The offset of the attribute an error reply blames (extended ACK, see
// OpenNetfilterSocket), or 0.
uint32_t BadAttrOffset(const nlmsghdr* nlh) {
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return 0;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  // The TLVs follow the error and the refused message's header, and its
  // payload unless the reply is capped.
  size_t at = sizeof(nlmsgerr);
  if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) at += err->msg.nlmsg_len - sizeof(nlmsghdr);
  for (const nlattr* attr : NetlinkAttrs(nlh, at)) {
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS && mnl_attr_get_payload_len(attr) >= 4) {
      return mnl_attr_get_u32(attr);
    }
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NetlinkSocket>> OpenNetfilterSocket() {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == nullptr) {
    return absl::UnavailableError(absl::StrCat("opening the netfilter netlink socket: ", strerror(errno)));
  }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(nl);
    return absl::UnavailableError(absl::StrCat("binding the netlink socket: ", strerror(err)));
  }
  int fd = mnl_socket_get_fd(nl);
  // Room for many error reports when a large batch fails.
  if (auto s = SetBuf(fd, SO_RCVBUFFORCE, 16 << 20); !s.ok()) {
    mnl_socket_close(nl);
    return absl::PermissionDeniedError("raising the netlink receive buffer needs CAP_NET_ADMIN");
  }
  // Error replies name the refused attribute (which element of a message)
  // and do not echo the whole message. Best effort: without them an error
  // names the message only.
  const int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  return std::unique_ptr<NetlinkSocket>(new MnlSocket(nl));
}

absl::Status SendBatch(NetlinkSocket& socket, const std::vector<iovec>& iov,
                       const std::function<Blame(uint32_t seq, uint32_t bad_attr)>& what) {
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (auto s = socket.ReserveSend(total); !s.ok()) return s;
  // EINTR / EAGAIN from sendmsg(): the batch did not reach the kernel
  // (netlink_sendmsg fails before handing it over), so sending it again is
  // safe. Any other failure also means nothing was applied.
  constexpr int kTries = 8;
  for (int tries = 1;; ++tries) {
    if (socket.Send(iov.data(), iov.size()) >= 0) break;
    if ((errno == EINTR || errno == EAGAIN) && tries < kTries) continue;
    return absl::UnavailableError(absl::StrCat("sending the netlink batch (", total, " bytes): ", strerror(errno)));
  }
  Blame first_error;
  int first_errno = 0;
  int errors = 0;
  // A reply that was dropped (ENOBUFS: the receive buffer overflowed) or cut
  // short. Any error reply means the kernel aborted the whole batch; without
  // one, a lost reply leaves the batch's outcome unknown.
  const char* lost = nullptr;
  int interrupted = 0;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  while (true) {
    ssize_t len = socket.Receive(buf.data(), buf.size());
    if (len < 0) {
      if (errno == EAGAIN) break;
      // Interrupted: the replies are still queued (bounded, in case a
      // signal storm never lets recv() finish).
      if (errno == EINTR && ++interrupted < kTries) continue;
      if (errno == ENOBUFS) {
        lost = "replies were dropped (ENOBUFS)";
        continue;
      }
      return absl::UnknownError(absl::StrCat("reading netlink replies: ", strerror(errno),
                                             "; the batch's outcome is unknown"));
    }
    int rem = static_cast<int>(std::min<size_t>(static_cast<size_t>(len), buf.size()));
    if (static_cast<size_t>(len) > buf.size()) lost = "a reply was truncated";
    nlmsghdr* nlh = reinterpret_cast<nlmsghdr*>(buf.data());
    for (; mnl_nlmsg_ok(nlh, rem); nlh = mnl_nlmsg_next(nlh, &rem)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        lost = "a reply was truncated";
        continue;
      }
      auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error == 0) continue;
      if (errors++ == 0) {
        first_error = what(nlh->nlmsg_seq, BadAttrOffset(nlh));
        first_errno = -err->error;
      }
    }
    if (rem > 0) lost = "a reply was truncated";  // a partial message at the end
  }
  if (errors == 0 && lost != nullptr) {
    // Possibly committed, possibly not: the caller must not assume either
    // (NftDataplane rewrites the whole table on its next commit).
    return absl::UnknownError(absl::StrCat("sending the netlink batch (", total, " bytes): ", lost,
                                           "; the batch's outcome is unknown"));
  }
  if (errors > 0) {
    std::string msg = absl::StrCat(first_error.text, ": kernel refused the change: ", strerror(first_errno));
    if (errors > 1) absl::StrAppend(&msg, " (and ", errors - 1, " more errors)");
    return BlameService(absl::FailedPreconditionError(msg), first_error.owner);
  }
  return absl::OkStatus();
}

}  // namespace nftproxy::dp
