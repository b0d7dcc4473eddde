#include "dataplane/conntrack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <string.h>

#include <algorithm>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"

namespace nftproxy::dp {
namespace {

struct DumpState {
  const std::set<FlowTarget>* targets;
  Family family;
  std::vector<nf_conntrack*> doomed;
};

int OnEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* st = static_cast<DumpState*>(data);
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
  if (!(nfct_get_attr_u32(ct, ATTR_STATUS) & IPS_DST_NAT)) return NFCT_CB_CONTINUE;
  FlowTarget t;
  t.addr.family = st->family;
  if (st->family == Family::kV4) {
    const uint32_t a = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC);
    memcpy(t.addr.bytes.data(), &a, 4);
  } else {
    memcpy(t.addr.bytes.data(), nfct_get_attr(ct, ATTR_REPL_IPV6_SRC), 16);
  }
  t.port = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
  if (st->targets->count(t)) st->doomed.push_back(nfct_clone(ct));
  return NFCT_CB_CONTINUE;
}

}  // namespace

absl::StatusOr<int> DeleteUdpFlowsTo(const std::vector<FlowTarget>& targets) {
  if (targets.empty()) return 0;
  const std::set<FlowTarget> wanted(targets.begin(), targets.end());
  nfct_handle* h = nfct_open(CONNTRACK, 0);
  if (h == nullptr) return absl::UnavailableError(absl::StrCat("opening ctnetlink: ", strerror(errno)));
  int deleted = 0;
  for (Family fam : {Family::kV4, Family::kV6}) {
    const bool any = std::any_of(targets.begin(), targets.end(), [fam](const FlowTarget& t) { return t.addr.family == fam; });
    if (!any) continue;
    DumpState st{&wanted, fam, {}};
    nfct_callback_register(h, NFCT_T_ALL, OnEntry, &st);
    uint32_t family = fam == Family::kV4 ? AF_INET : AF_INET6;
    const int rc = nfct_query(h, NFCT_Q_DUMP, &family);
    nfct_callback_unregister(h);
    for (nf_conntrack* ct : st.doomed) {
      // ENOENT: it expired meanwhile, which is what we wanted anyway.
      if (nfct_query(h, NFCT_Q_DESTROY, ct) == 0) ++deleted;
      nfct_destroy(ct);
    }
    if (rc < 0 && errno != EINTR) {
      const int err = errno;
      nfct_close(h);
      return absl::UnavailableError(absl::StrCat("dumping conntrack: ", strerror(err)));
    }
  }
  nfct_close(h);
  return deleted;
}

}  // namespace nftproxy::dp
