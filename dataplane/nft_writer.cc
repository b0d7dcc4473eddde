#include "dataplane/nft_writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace nftproxy::dp {
namespace {

// nft's datatype ids, concatenated 6 bits each: how `nft list` knows to
// print the key as "ipv4_addr . inet_proto . inet_service".
constexpr uint32_t kTypeIpv4 = 7, kTypeIpv6 = 8, kTypeInetProto = 12, kTypeInetService = 13;
constexpr uint32_t ConcatType(uint32_t a, uint32_t b, uint32_t c) {
  return (((a << 6) | b) << 6) | c;
}
constexpr uint32_t kSetId4 = 1, kSetId6 = 2;
constexpr size_t kElemsPerMessage = 256;
constexpr uint32_t kPageSize = 256 * 1024;
constexpr uint32_t kPageOverrun = 256 * 1024;

// One batch under construction, remembering which object each message is
// about so that kernel errors (reported by sequence number) name it.
class Batch {
 public:
  Batch(const std::string& table, uint32_t* seq) : table_(table), seq_(seq) {
    b_ = nftnl_batch_alloc(kPageSize, kPageOverrun);
    nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq_)++);
    nftnl_batch_update(b_);
  }
  ~Batch() { nftnl_batch_free(b_); }

  nlmsghdr* Header(uint16_t type, uint16_t flags, std::string what) {
    first_seq_ = first_seq_ ? first_seq_ : *seq_;
    whats_.push_back(std::move(what));
    ++messages_;
    return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(b_)), type, NFPROTO_INET,
                                 flags, (*seq_)++);
  }
  void Done() { nftnl_batch_update(b_); }

  void Table(uint16_t type, uint16_t flags) {
    nftnl_table* t = nftnl_table_alloc();
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, table_.c_str());
    nlmsghdr* nlh = Header(type, flags, absl::StrCat("table inet ", table_));
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    Done();
  }

  void Set(const char* name, uint32_t id, Family fam) {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s, NFTNL_SET_ID, id);
    nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_MAP);
    const bool v4 = fam == Family::kV4;
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE,
                      ConcatType(v4 ? kTypeIpv4 : kTypeIpv6, kTypeInetProto, kTypeInetService));
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, v4 ? 12 : 24);
    nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
    nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, 0);
    nlmsghdr* nlh = Header(NFT_MSG_NEWSET, NLM_F_CREATE, absl::StrCat("map ", name));
    nftnl_set_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    Done();
  }

  void NewChain(const std::string& name, const std::string& owner, int hook = -1) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    if (hook >= 0) {
      nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
      nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, -100 /* NF_IP_PRI_NAT_DST, "dstnat" */);
      nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "nat");
      nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    }
    nlmsghdr* nlh = Header(NFT_MSG_NEWCHAIN, NLM_F_CREATE, ChainWhat(name, owner));
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    Done();
  }

  void DelChain(const std::string& name, const std::string& owner) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
    nlmsghdr* nlh = Header(NFT_MSG_DELCHAIN, 0, ChainWhat(name, owner));
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    Done();
  }

  // Deletes every rule of the chain.
  void FlushChain(const std::string& name, const std::string& owner) {
    nftnl_rule* r = nftnl_rule_alloc();
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table_.c_str());
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, name.c_str());
    nlmsghdr* nlh = Header(NFT_MSG_DELRULE, 0, ChainWhat(name, owner));
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    Done();
  }

  // Appends a rule built by `build` to the chain.
  template <typename F>
  void Rule(const std::string& chain, std::string what, F build) {
    nftnl_rule* r = nftnl_rule_alloc();
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table_.c_str());
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    build(r);
    nlmsghdr* nlh = Header(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, std::move(what));
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    Done();
  }

  // Adds (NEWSETELEM) or removes (DELSETELEM) vmap elements, split over
  // several messages so that each stays well under the page overrun.
  void Elements(uint16_t type, Family fam,
                const std::vector<std::pair<const VmapKey*, const VmapTarget*>>& elems) {
    const bool v4 = fam == Family::kV4;
    for (size_t start = 0; start < elems.size(); start += kElemsPerMessage) {
      size_t end = std::min(elems.size(), start + kElemsPerMessage);
      nftnl_set* s = nftnl_set_alloc();
      nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
      nftnl_set_set_str(s, NFTNL_SET_NAME, v4 ? kServiceMap4 : kServiceMap6);
      std::string what;
      for (size_t i = start; i < end; ++i) {
        const VmapKey& k = *elems[i].first;
        uint8_t key[24] = {};
        size_t alen = k.addr.size();
        memcpy(key, k.addr.bytes.data(), alen);
        key[alen] = static_cast<uint8_t>(k.proto);
        key[alen + 4] = static_cast<uint8_t>(k.port >> 8);
        key[alen + 5] = static_cast<uint8_t>(k.port & 0xff);
        nftnl_set_elem* e = nftnl_set_elem_alloc();
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, alen + 8);
        if (type == NFT_MSG_NEWSETELEM) {
          nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, NFT_GOTO);
          nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, elems[i].second->chain.c_str());
        }
        nftnl_set_elem_add(s, e);
        if (what.size() < 200) {
          absl::StrAppend(&what, what.empty() ? "" : ", ", elems[i].second->owner, " (",
                          k.addr.ToString(), " ", L4ProtoName(k.proto), "/", k.port, ")");
        }
      }
      nlmsghdr* nlh = Header(type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE | NLM_F_EXCL : 0,
                             absl::StrCat("map ", v4 ? kServiceMap4 : kServiceMap6,
                                          " elements of ", what));
      nftnl_set_elems_nlmsg_build_payload(nlh, s);
      nftnl_set_free(s);
      Done();
    }
  }

  void End() {
    nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq_)++);
    nftnl_batch_update(b_);
  }

  nftnl_batch* raw() { return b_; }
  uint32_t messages() const { return messages_; }
  // What the message with this sequence number was about.
  std::string What(uint32_t seq) const {
    if (seq >= first_seq_ && seq - first_seq_ < whats_.size()) return whats_[seq - first_seq_];
    return "the batch";
  }

 private:
  static std::string ChainWhat(const std::string& name, const std::string& owner) {
    return owner.empty() ? absl::StrCat("chain ", name)
                         : absl::StrCat(owner, " (chain ", name, ")");
  }

  std::string table_;
  uint32_t* seq_;
  nftnl_batch* b_;
  uint32_t first_seq_ = 0;
  uint32_t messages_ = 0;
  std::vector<std::string> whats_;
};

// --- expression helpers -------------------------------------------------

void Meta(nftnl_rule* r, uint32_t key, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  nftnl_rule_add_expr(r, e);
}

void Cmp(nftnl_rule* r, uint32_t sreg, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}

void Payload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  nftnl_rule_add_expr(r, e);
}

void Immediate(nftnl_rule* r, uint32_t dreg, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
  nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}

void Jump(nftnl_rule* r, const char* chain) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_JUMP);
  nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
  nftnl_rule_add_expr(r, e);
}

void MatchNfproto(nftnl_rule* r, Family fam) {
  uint8_t proto = fam == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  Meta(r, NFT_META_NFPROTO, NFT_REG_1);
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
}

// "ip daddr . meta l4proto . th dport vmap @service-ipsN", as nft emits it.
void ServiceLookup(nftnl_rule* r, Family fam) {
  const bool v4 = fam == Family::kV4;
  MatchNfproto(r, fam);
  Payload(r, NFT_PAYLOAD_NETWORK_HEADER, v4 ? 16 : 24, v4 ? 4 : 16, NFT_REG_1);
  Meta(r, NFT_META_L4PROTO, v4 ? NFT_REG32_01 : NFT_REG_2);
  Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, v4 ? NFT_REG32_02 : NFT_REG32_05);
  nftnl_expr* e = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, v4 ? kServiceMap4 : kServiceMap6);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, v4 ? kSetId4 : kSetId6);
  nftnl_rule_add_expr(r, e);
}

// The condition "<value> < below", where value is a host-order u32 in reg 1;
// cmp compares bytes, so nft converts to network order first.
void LessThan(nftnl_rule* r, uint32_t below) {
  nftnl_expr* e = nftnl_expr_alloc("byteorder");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, 4);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, 4);
  nftnl_rule_add_expr(r, e);
  uint32_t be = htonl(below);
  Cmp(r, NFT_REG_1, NFT_CMP_LT, &be, 4);
}

void BuildDnat(nftnl_rule* r, const DnatRule& d) {
  const bool v4 = d.addr.family == Family::kV4;
  uint8_t proto = static_cast<uint8_t>(d.proto);
  Meta(r, NFT_META_L4PROTO, NFT_REG_1);
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
  if (d.pick == Pick::kRandom || d.pick == Pick::kRoundRobin) {
    nftnl_expr* e = nftnl_expr_alloc("numgen");
    nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, d.pick == Pick::kRandom ? NFT_NG_RANDOM : NFT_NG_INCREMENTAL);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, d.modulus);
    nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
    nftnl_rule_add_expr(r, e);
    LessThan(r, d.below);
  } else if (d.pick == Pick::kSourceHash) {
    MatchNfproto(r, d.addr.family);
    Payload(r, NFT_PAYLOAD_NETWORK_HEADER, v4 ? 12 : 8, v4 ? 4 : 16, NFT_REG_2);
    nftnl_expr* e = nftnl_expr_alloc("hash");
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SREG, NFT_REG_2);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_LEN, v4 ? 4 : 16);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_MODULUS, d.modulus);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SEED, d.seed);
    nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_OFFSET, 0);
    nftnl_rule_add_expr(r, e);
    LessThan(r, d.below);
  }
  Immediate(r, NFT_REG_1, d.addr.bytes.data(), d.addr.size());
  uint16_t port = htons(d.port);
  Immediate(r, NFT_REG_2, &port, 2);
  nftnl_expr* e = nftnl_expr_alloc("nat");
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, v4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
  nftnl_rule_add_expr(r, e);
}

void AddChainRules(Batch& b, const std::string& name, const Chain& chain) {
  for (const DnatRule& d : chain.rules) {
    b.Rule(name, absl::StrCat(chain.owner, " (chain ", name, ", backend ", d.addr.ToString(), ":",
                              d.port, ")"),
           [&](nftnl_rule* r) { BuildDnat(r, d); });
  }
}

using ElemList = std::vector<std::pair<const VmapKey*, const VmapTarget*>>;

void AddElements(Batch& b, uint16_t type, const ElemList& elems) {
  ElemList v4, v6;
  for (const auto& e : elems) (e.first->addr.family == Family::kV4 ? v4 : v6).push_back(e);
  if (!v4.empty()) b.Elements(type, Family::kV4, v4);
  if (!v6.empty()) b.Elements(type, Family::kV6, v6);
}

// The full table: skeleton, every chain, every element.
void BuildFull(Batch& b, const Ruleset& to) {
  // Create-if-missing then delete, so the delete cannot fail; the new table
  // replaces the old one when the batch commits.
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
  b.Table(NFT_MSG_DELTABLE, 0);
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL);
  b.Set(kServiceMap4, kSetId4, Family::kV4);
  b.Set(kServiceMap6, kSetId6, Family::kV6);
  b.NewChain(kServicesChain, "");
  b.NewChain(kPreroutingChain, "", NF_INET_PRE_ROUTING);
  b.NewChain(kOutputChain, "", NF_INET_LOCAL_OUT);
  for (const auto& [name, chain] : to.chains) b.NewChain(name, chain.owner);
  for (Family fam : {Family::kV4, Family::kV6}) {
    b.Rule(kServicesChain, "chain services", [&](nftnl_rule* r) { ServiceLookup(r, fam); });
  }
  b.Rule(kPreroutingChain, "chain prerouting", [](nftnl_rule* r) { Jump(r, kServicesChain); });
  b.Rule(kOutputChain, "chain output", [](nftnl_rule* r) { Jump(r, kServicesChain); });
  for (const auto& [name, chain] : to.chains) AddChainRules(b, name, chain);
  ElemList elems;
  for (const auto& [k, t] : to.vmap) elems.emplace_back(&k, &t);
  AddElements(b, NFT_MSG_NEWSETELEM, elems);
}

// Only what changed between `from` and `to`, in an order the kernel accepts:
// elements that go away release their chains before the chains are deleted,
// and chains exist before elements point at them.
void BuildDiff(Batch& b, const Ruleset& from, const Ruleset& to) {
  ElemList del, add;
  for (const auto& [k, t] : from.vmap) {
    auto it = to.vmap.find(k);
    if (it == to.vmap.end() || it->second.chain != t.chain) del.emplace_back(&k, &t);
  }
  for (const auto& [k, t] : to.vmap) {
    auto it = from.vmap.find(k);
    if (it == from.vmap.end() || it->second.chain != t.chain) add.emplace_back(&k, &t);
  }
  AddElements(b, NFT_MSG_DELSETELEM, del);
  for (const auto& [name, chain] : to.chains) {
    auto it = from.chains.find(name);
    if (it == from.chains.end()) {
      b.NewChain(name, chain.owner);
      AddChainRules(b, name, chain);
    } else if (!(it->second.rules == chain.rules)) {
      b.FlushChain(name, chain.owner);
      AddChainRules(b, name, chain);
    }
  }
  AddElements(b, NFT_MSG_NEWSETELEM, add);
  for (const auto& [name, chain] : from.chains) {
    if (!to.chains.count(name)) b.DelChain(name, chain.owner);
  }
}

absl::Status SetBuf(int fd, int opt, int size) {
  if (setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size)) < 0) {
    return absl::UnavailableError(absl::StrCat("setsockopt: ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<NftWriter>> NftWriter::Create() {
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
  return std::unique_ptr<NftWriter>(new NftWriter(nl));
}

NftWriter::~NftWriter() { mnl_socket_close(nl_); }

namespace {

// Sends the batch and collects every error the kernel reports for it. The
// kernel handles a batch synchronously inside sendmsg(), so all replies are
// queued when it returns; a batch without errors gets no reply at all.
absl::Status SendBatch(mnl_socket* nl, Batch& b, uint64_t* bytes) {
  nftnl_batch* raw = b.raw();
  int n = nftnl_batch_iovec_len(raw);
  std::vector<iovec> iov(n);
  nftnl_batch_iovec(raw, iov.data(), n);
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  if (bytes != nullptr) *bytes = total;
  int fd = mnl_socket_get_fd(nl);
  // netlink refuses a message larger than the send buffer.
  if (auto s = SetBuf(fd, SO_SNDBUFFORCE, static_cast<int>(std::min<size_t>(total + (1 << 20), INT32_MAX / 2)));
      !s.ok()) {
    return s;
  }
  sockaddr_nl snl{};
  snl.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &snl;
  msg.msg_namelen = sizeof(snl);
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (sendmsg(fd, &msg, 0) < 0) {
    return absl::UnavailableError(absl::StrCat("sending the netlink batch (", total, " bytes): ", strerror(errno)));
  }
  std::string first_error;
  int first_errno = 0;
  int errors = 0;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) break;
    ssize_t len = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (len < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      if (errno == ENOBUFS) {
        // Too many error reports to read them all; the batch still failed.
        if (errors == 0) { ++errors; first_error = "the batch"; first_errno = ENOBUFS; }
        continue;
      }
      return absl::UnavailableError(absl::StrCat("reading netlink replies: ", strerror(errno)));
    }
    int rem = static_cast<int>(len);
    for (nlmsghdr* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, rem);
         nlh = mnl_nlmsg_next(nlh, &rem)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error == 0) continue;
      if (errors++ == 0) {
        first_error = b.What(nlh->nlmsg_seq);
        first_errno = -err->error;
      }
    }
  }
  if (errors > 0) {
    std::string msg = absl::StrCat(first_error, ": kernel refused the change: ", strerror(first_errno));
    if (errors > 1) absl::StrAppend(&msg, " (and ", errors - 1, " more errors)");
    return absl::FailedPreconditionError(msg);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NftWriter::Commit(const Ruleset* from, const Ruleset& to, CommitStats* stats) {
  Batch b(to.table, &seq_);
  if (from == nullptr) {
    BuildFull(b, to);
  } else {
    BuildDiff(b, *from, to);
  }
  b.End();
  if (stats != nullptr) {
    stats->messages = b.messages();
    stats->full = from == nullptr;
  }
  if (b.messages() == 0) return absl::OkStatus();
  return SendBatch(nl_, b, stats != nullptr ? &stats->bytes : nullptr);
}

}  // namespace nftproxy::dp
