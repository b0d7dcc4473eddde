// The netfilter netlink socket behind a small interface (open, buffers,
// sendmsg, non-blocking receive), so that tests can inject ENOBUFS, EINTR
// or short reads; and the one routine that sends a batch and collects the
// kernel's error acknowledgements.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct iovec;
struct nlattr;
struct nlmsghdr;

namespace nftproxy::dp {

class NetlinkSocket {
 public:
  virtual ~NetlinkSocket() = default;
  // Makes room for a batch of `bytes` (netlink refuses a message larger
  // than the send buffer).
  virtual absl::Status ReserveSend(size_t bytes) = 0;
  // sendmsg() of the batch to the kernel: bytes sent, or -1 with errno set.
  virtual ssize_t Send(const iovec* iov, size_t iovcnt) = 0;
  // One datagram of replies if one is queued: its length, or -1 with errno
  // set (EAGAIN: nothing queued).
  virtual ssize_t Receive(void* buf, size_t len) = 0;
};

// NETLINK_NETFILTER, bound, receive buffer raised, extended ACKs on.
absl::StatusOr<std::unique_ptr<NetlinkSocket>> OpenNetfilterSocket();

// Sends one batch (all of `iov`) and collects the errors the kernel reports
// for it. The kernel handles a batch synchronously inside sendmsg(), so all
// replies are queued when it returns; a batch without errors gets no reply.
// What a refused message was about: its description, and the owner of the
// object at fault ("service ns/name"; empty for the fixed table).
struct Blame {
  std::string text;
  std::string owner;
};

// `what(seq, bad_attr_offset)` names the message of a sequence number.
// Errors: "<what>: kernel refused the change: <errno>[ (and N more errors)]",
// carrying the first refused object's owner (see ServiceOfError).
absl::Status SendBatch(NetlinkSocket& socket, const std::vector<iovec>& iov,
                       const std::function<Blame(uint32_t seq, uint32_t bad_attr)>& what);

// The attributes of a message from `offset` bytes into its payload, and
// those nested in an attribute (libmnl's iteration macros, typed for C++).
std::vector<const nlattr*> NetlinkAttrs(const nlmsghdr* nlh, size_t offset);
std::vector<const nlattr*> NestedAttrs(const nlattr* attr);

}  // namespace nftproxy::dp
