// Conntrack clean-up over ctnetlink directly (NETLINK_NETFILTER, subsystem
// CTNETLINK): one dump of the family's UDP entries, then one delete per
// doomed entry. No libnetfilter_conntrack: the same code in the default and
// the static build.
#include "dataplane/conntrack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <ctime>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "dataplane/netlink_socket.h"

namespace nftproxy::dp {
namespace {

constexpr uint16_t kCtGet = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
constexpr uint16_t kCtDelete = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
// The kernel's CTA_FILTER_F_CTA_PROTO_NUM (net/netfilter/nf_conntrack_netlink.c;
// not in the uapi headers): "match the original tuple's protocol number".
constexpr uint32_t kFilterProtoNum = 1u << 3;
constexpr size_t kRecvBuf = 64 * 1024;

// One conntrack entry as far as the clean-up cares, with what identifies it
// to a delete request (its original tuple, zone and id, as the kernel sent
// them).
struct Entry {
  uint8_t proto = 0;
  uint32_t status = 0;
  bool has_reply_src = false;
  FlowTarget reply_src;
  std::string orig_tuple;  // CTA_TUPLE_ORIG's payload
  bool has_zone = false;
  uint16_t zone = 0;       // network order
  bool has_id = false;
  uint32_t id = 0;         // network order
};

void ParseTupleInto(const nlattr* tuple, Family fam, Entry* e, bool reply) {
  for (const nlattr* part : NestedAttrs(tuple)) {
    if (mnl_attr_get_type(part) == CTA_TUPLE_PROTO) {
      for (const nlattr* a : NestedAttrs(part)) {
        const uint16_t t = mnl_attr_get_type(a);
        if (t == CTA_PROTO_NUM && mnl_attr_get_payload_len(a) >= 1) e->proto = mnl_attr_get_u8(a);
        if (reply && t == CTA_PROTO_SRC_PORT && mnl_attr_get_payload_len(a) >= 2) {
          e->reply_src.port = ntohs(mnl_attr_get_u16(a));
        }
      }
    } else if (reply && mnl_attr_get_type(part) == CTA_TUPLE_IP) {
      const uint16_t want = fam == Family::kV4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC;
      const size_t len = fam == Family::kV4 ? 4 : 16;
      for (const nlattr* a : NestedAttrs(part)) {
        if (mnl_attr_get_type(a) == want && mnl_attr_get_payload_len(a) == len) {
          e->reply_src.addr.family = fam;
          memcpy(e->reply_src.addr.bytes.data(), mnl_attr_get_payload(a), len);
          e->has_reply_src = true;
        }
      }
    }
  }
}

Entry ParseEntry(const nlmsghdr* nlh, Family fam) {
  Entry e;
  for (const nlattr* a : NetlinkAttrs(nlh, sizeof(nfgenmsg))) {
    switch (mnl_attr_get_type(a)) {
      case CTA_TUPLE_ORIG:
        e.orig_tuple.assign(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
        ParseTupleInto(a, fam, &e, /*reply=*/false);
        break;
      case CTA_TUPLE_REPLY:
        ParseTupleInto(a, fam, &e, /*reply=*/true);
        break;
      case CTA_STATUS:
        if (mnl_attr_get_payload_len(a) >= 4) e.status = ntohl(mnl_attr_get_u32(a));
        break;
      case CTA_ZONE:
        if (mnl_attr_get_payload_len(a) >= 2) e.has_zone = true, e.zone = mnl_attr_get_u16(a);
        break;
      case CTA_ID:
        if (mnl_attr_get_payload_len(a) >= 4) e.has_id = true, e.id = mnl_attr_get_u32(a);
        break;
      default:
        break;
    }
  }
  return e;
}

class CtSocket {
 public:
  ~CtSocket() {
    if (nl_ != nullptr) mnl_socket_close(nl_);
  }

  absl::Status Open() {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (nl_ == nullptr) return absl::UnavailableError(absl::StrCat("opening ctnetlink: ", strerror(errno)));
    if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      return absl::UnavailableError(absl::StrCat("binding ctnetlink: ", strerror(errno)));
    }
    // Report only the error code in acks, not the request again.
    int one = 1;
    mnl_socket_setsockopt(nl_, NETLINK_CAP_ACK, &one, sizeof(one));
    portid_ = mnl_socket_get_portid(nl_);
    seq_ = static_cast<uint32_t>(time(nullptr));
    return absl::OkStatus();
  }

  // Every entry of `fam` (only UDP ones if `udp_only` filters in the
  // kernel), in order. Errors carry the errno in `*err`.
  absl::Status Dump(Family fam, bool udp_only, std::vector<Entry>* out, int* err) {
    std::vector<char> req(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = Header(req.data(), kCtGet, NLM_F_REQUEST | NLM_F_DUMP, fam);
    if (udp_only) {
      nlattr* filter = mnl_attr_nest_start(nlh, CTA_FILTER);
      mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, kFilterProtoNum);
      mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, 0);
      mnl_attr_nest_end(nlh, filter);
      nlattr* tuple = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
      nlattr* proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
      mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_UDP);
      mnl_attr_nest_end(nlh, proto);
      mnl_attr_nest_end(nlh, tuple);
    }
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
      *err = errno;
      return absl::UnavailableError(absl::StrCat("asking for conntrack entries: ", strerror(errno)));
    }
    const uint32_t seq = nlh->nlmsg_seq;
    std::vector<char> buf(kRecvBuf);
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        *err = errno;
        return absl::UnavailableError(absl::StrCat("dumping conntrack: ", strerror(errno)));
      }
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(m, left);
           m = mnl_nlmsg_next(m, &left)) {
        if (m->nlmsg_seq != seq || m->nlmsg_pid != portid_) continue;  // not ours (a late ack)
        if (m->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
        if (m->nlmsg_type == NLMSG_ERROR) {
          const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
          if (m->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr)) || e->error == 0) return absl::OkStatus();
          *err = -e->error;
          return absl::UnavailableError(absl::StrCat("dumping conntrack: ", strerror(-e->error)));
        }
        // NLM_F_DUMP_INTR (the table changed meanwhile): what came is still
        // valid, entries that moved are old news; keep what we have.
        if ((m->nlmsg_type >> 8) == NFNL_SUBSYS_CTNETLINK) out->push_back(ParseEntry(m, fam));
      }
    }
  }

  // Deletes one entry; ENOENT (it went meanwhile) counts as not deleted.
  absl::StatusOr<bool> Delete(const Entry& e, Family fam) {
    std::vector<char> req(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = Header(req.data(), kCtDelete, NLM_F_REQUEST | NLM_F_ACK, fam);
    mnl_attr_put(nlh, NLA_F_NESTED | CTA_TUPLE_ORIG, e.orig_tuple.size(), e.orig_tuple.data());
    if (e.has_zone) mnl_attr_put_u16(nlh, CTA_ZONE, e.zone);
    if (e.has_id) mnl_attr_put_u32(nlh, CTA_ID, e.id);
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
      return absl::UnavailableError(absl::StrCat("deleting a conntrack entry: ", strerror(errno)));
    }
    const uint32_t seq = nlh->nlmsg_seq;
    std::vector<char> buf(8192);
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::UnavailableError(absl::StrCat("deleting a conntrack entry: ", strerror(errno)));
      }
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(m, left);
           m = mnl_nlmsg_next(m, &left)) {
        if (m->nlmsg_seq != seq || m->nlmsg_type != NLMSG_ERROR) continue;
        const int error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
        if (error == 0) return true;
        if (error == -ENOENT) return false;
        return absl::UnavailableError(absl::StrCat("deleting a conntrack entry: ", strerror(-error)));
      }
    }
  }

 private:
  nlmsghdr* Header(char* buf, uint16_t type, uint16_t flags, Family fam) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = ++seq_;
    auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    g->nfgen_family = fam == Family::kV4 ? AF_INET : AF_INET6;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    return nlh;
  }

  mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
};

}  // namespace

absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) {
  if (targets.empty()) return 0;
  const std::set<FlowTarget> wanted(targets.begin(), targets.end());
  CtSocket s;
  if (absl::Status st = s.Open(); !st.ok()) return st;
  int deleted = 0;
  for (Family fam : {Family::kV4, Family::kV6}) {
    const bool any = std::any_of(targets.begin(), targets.end(), [fam](const FlowTarget& t) { return t.addr.family == fam; });
    if (!any) continue;
    std::vector<Entry> entries;
    int err = 0;
    absl::Status st = s.Dump(fam, /*udp_only=*/true, &entries, &err);
    if (!st.ok() && (err == EINVAL || err == EOPNOTSUPP)) {
      // A kernel without tuple filters in dumps (before 5.8): all entries,
      // filtered here.
      entries.clear();
      st = s.Dump(fam, /*udp_only=*/false, &entries, &err);
    }
    if (!st.ok()) return st;
    for (const Entry& e : entries) {
      if (e.proto != IPPROTO_UDP || !(e.status & IPS_DST_NAT) || !e.has_reply_src) continue;
      if (!wanted.count(e.reply_src) || e.orig_tuple.empty()) continue;
      absl::StatusOr<bool> gone = s.Delete(e, fam);
      if (!gone.ok()) return gone.status();
      deleted += *gone ? 1 : 0;
    }
  }
  return deleted;
}

}  // namespace nftproxy::dp
