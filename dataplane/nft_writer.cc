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
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/parallel.h"

namespace nftproxy::dp {
namespace {

// nft's datatype ids (how `nft list` knows how to print keys and data),
// concatenated 6 bits each.
constexpr uint32_t kTypeIpv4 = 7, kTypeIpv6 = 8, kTypeInetProto = 12, kTypeInetService = 13, kTypeMark = 19;
constexpr uint32_t Concat(std::initializer_list<uint32_t> types) {
  uint32_t t = 0;
  for (uint32_t x : types) t = (t << 6) | x;
  return t;
}
constexpr size_t kElemsPerMessage = 256;
constexpr uint32_t kPageSize = 256 * 1024;
constexpr uint32_t kPageOverrun = 256 * 1024;
constexpr uint32_t kRtnLocal = 2;  // RTN_LOCAL
constexpr uint32_t kAffinitySize = 262144;
// nft's set userdata: key/data byte order, so ranges of host-order keys print right.
constexpr uint8_t kUdataKeyByteorder = 0, kUdataDataByteorder = 1;
constexpr uint32_t kHostEndian = 1, kBigEndian = 2;

Family FamOf(int i) { return i == 0 ? Family::kV4 : Family::kV6; }
const char* Digit(Family f) { return f == Family::kV4 ? "4" : "6"; }
uint32_t AddrType(Family f) { return f == Family::kV4 ? kTypeIpv4 : kTypeIpv6; }
uint32_t AddrLen(Family f) { return f == Family::kV4 ? 4 : 16; }

struct SetSpec {
  std::string name;
  uint32_t flags = 0;
  uint32_t key_type = 0, key_len = 0;
  uint32_t data_type = 0, data_len = 0;  // maps only
  uint32_t size = 0;
  bool byteorder_udata = false;          // key host order, data big endian
};

// One element on the wire (no heap: a full sync writes hundreds of
// thousands of them).
struct Elem {
  std::array<uint8_t, 32> key;
  std::array<uint8_t, 20> data;
  uint8_t key_len = 0;
  uint8_t data_len = 0;  // 0: none
  bool interval_end = false;
  const std::string* chain = nullptr;  // verdict maps: goto target
};

// What an element is about, put into words only when the kernel refuses it.
struct Tag {
  enum class Kind : uint8_t { kFrontend, kNodePort, kAddr, kCidr, kInterval } kind = Kind::kAddr;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
  int prefix = 0;
  uint32_t ticket = 0;
  IpAddr addr;
  const std::string* owner = nullptr;  // "service ns/name"
};

std::string Describe(const Tag& t) {
  switch (t.kind) {
    case Tag::Kind::kFrontend:
      return absl::StrCat(*t.owner, " (", t.addr.ToString(), " ", L4ProtoName(t.proto), "/", t.port, ")");
    case Tag::Kind::kNodePort:
      return absl::StrCat(*t.owner, " (nodePort ", L4ProtoName(t.proto), "/", t.port, ")");
    case Tag::Kind::kAddr:
      return t.addr.ToString();
    case Tag::Kind::kCidr:
      return Cidr{t.addr, t.prefix}.ToString();
    case Tag::Kind::kInterval:
      // The service is named when an error is reported (see Send).
      return absl::StrFormat("ticket 0x%08x (endpoint %s:%d)", t.ticket, t.addr.ToString(), t.port);
  }
  return "";
}

// The elements of one set, with their tags.
struct ElemList {
  std::vector<Elem> elems;
  std::vector<Tag> tags;
};

// The attributes of a message from `offset` bytes into its payload, or
// nested in an attribute (libmnl's iteration macros, typed for C++).
std::vector<const nlattr*> AttrsIn(const char* p, const char* end) {
  std::vector<const nlattr*> out;
  while (mnl_attr_ok(reinterpret_cast<const nlattr*>(p), static_cast<int>(end - p))) {
    const auto* a = reinterpret_cast<const nlattr*>(p);
    out.push_back(a);
    p += MNL_ALIGN(a->nla_len);
  }
  return out;
}
std::vector<const nlattr*> Attrs(const nlmsghdr* nlh, size_t offset) {
  const char* begin = static_cast<const char*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  return begin < end ? AttrsIn(begin, end) : std::vector<const nlattr*>{};
}
std::vector<const nlattr*> Nested(const nlattr* attr) {
  const char* begin = static_cast<const char*>(mnl_attr_get_payload(attr));
  return AttrsIn(begin, begin + mnl_attr_get_payload_len(attr));
}

// One batch under construction, remembering which object each message is
// about so that kernel errors (reported by sequence number) name it. A
// batch can also be sent in parts (see SendBatch): a first part that starts
// with BEGIN, fragments built meanwhile on other threads with sequence
// numbers of their own (Renumber makes them follow the first part's), and a
// last part that holds END.
class Batch {
 public:
  enum class Kind { kFirst, kFragment };
  Batch(const std::string& table, uint32_t* seq, Kind kind = Kind::kFirst)
      : table_(table), seq_(kind == Kind::kFirst ? seq : &own_seq_) {
    b_ = nftnl_batch_alloc(kPageSize, kPageOverrun);
    if (kind == Kind::kFirst) {
      nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq_)++);
      nftnl_batch_update(b_);
    }
  }
  ~Batch() { nftnl_batch_free(b_); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Gives the messages consecutive sequence numbers from *seq on.
  void Renumber(uint32_t* seq) {
    first_seq_ = *seq;
    ForEachMessage([seq](nlmsghdr* nlh) {
      nlh->nlmsg_seq = (*seq)++;
      return true;
    });
  }

  // The message with this sequence number, as it is in the batch.
  const nlmsghdr* Find(uint32_t seq) {
    const nlmsghdr* found = nullptr;
    ForEachMessage([&](nlmsghdr* nlh) {
      if (nlh->nlmsg_seq == seq) found = nlh;
      return found == nullptr;
    });
    return found;
  }

  nlmsghdr* Header(uint16_t type, uint16_t flags, std::string what, int list = -1, uint32_t from = 0,
                   uint32_t to = 0) {
    first_seq_ = first_seq_ ? first_seq_ : *seq_;
    whats_.push_back(About{std::move(what), list, from, to});
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

  void Set(const SetSpec& spec) {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, spec.name.c_str());
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s, NFTNL_SET_ID, ++set_id_);
    nftnl_set_set_u32(s, NFTNL_SET_FLAGS, spec.flags);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, spec.key_type);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, spec.key_len);
    if (spec.flags & NFT_SET_MAP) {
      nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, spec.data_type);
      nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, spec.data_len);
    }
    if (spec.size) nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, spec.size);
    uint8_t udata[32];
    if (spec.byteorder_udata) {
      // TLVs: type u8, len u8, value.
      size_t n = 0;
      for (auto [type, value] : {std::pair{kUdataKeyByteorder, kHostEndian}, std::pair{kUdataDataByteorder, kBigEndian}}) {
        udata[n++] = type;
        udata[n++] = sizeof(uint32_t);
        memcpy(udata + n, &value, sizeof(uint32_t));
        n += sizeof(uint32_t);
      }
      nftnl_set_set_data(s, NFTNL_SET_USERDATA, udata, static_cast<uint32_t>(n));
    }
    nlmsghdr* nlh = Header(NFT_MSG_NEWSET, NLM_F_CREATE, absl::StrCat("set ", spec.name));
    nftnl_set_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    Done();
  }

  void NewChain(const std::string& name, const std::string& owner, int hook = -1, const char* type = "nat",
                int prio = 0) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    if (hook >= 0) {
      nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
      nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
      nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
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

  // Adds (NEWSETELEM) or removes (DELSETELEM) elements of one set, split
  // over several messages so that each stays well under the page overrun.
  // The batch keeps the list, to name the elements of a refused message.
  void Elements(uint16_t type, const std::string& set, ElemList list) {
    lists_.push_back(std::move(list));
    const int li = static_cast<int>(lists_.size() - 1);
    const std::vector<Elem>& elems = lists_.back().elems;
    for (size_t start = 0; start < elems.size(); start += kElemsPerMessage) {
      const size_t end = std::min(elems.size(), start + kElemsPerMessage);
      nftnl_set* s = nftnl_set_alloc();
      nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
      nftnl_set_set_str(s, NFTNL_SET_NAME, set.c_str());
      for (size_t i = start; i < end; ++i) {
        const Elem& el = elems[i];
        nftnl_set_elem* e = nftnl_set_elem_alloc();
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, el.key.data(), el.key_len);
        if (el.interval_end) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        if (type == NFT_MSG_NEWSETELEM) {
          if (el.chain != nullptr) {
            nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, NFT_GOTO);
            nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, el.chain->c_str());
          } else if (el.data_len > 0) {
            nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, el.data.data(), el.data_len);
          }
        }
        nftnl_set_elem_add(s, e);
      }
      nlmsghdr* nlh = Header(type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE | NLM_F_EXCL : 0,
                             absl::StrCat("set ", set, " elements of "), li, static_cast<uint32_t>(start),
                             static_cast<uint32_t>(end));
      nftnl_set_elems_nlmsg_build_payload(nlh, s);
      nftnl_set_free(s);
      Done();
    }
  }

  // Ends the batch (END takes the next number of *seq).
  void End(uint32_t* seq) {
    nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq)++);
    nftnl_batch_update(b_);
  }

  nftnl_batch* raw() { return b_; }
  uint32_t messages() const { return messages_; }
  bool Holds(uint32_t seq) const { return seq >= first_seq_ && seq - first_seq_ < whats_.size(); }
  // What the message with this sequence number was about; `bad_attr` is
  // the offset of the attribute the kernel blamed (extended ACK), or 0.
  std::string What(uint32_t seq, uint32_t bad_attr = 0) {
    if (!Holds(seq)) return "the batch";
    const About& w = whats_[seq - first_seq_];
    if (w.list < 0) return w.text;
    // An element message: the kernel names the refused element by the
    // offset of its attribute in the message.
    if (const int k = bad_attr > 0 ? ElementAt(Find(seq), bad_attr) : -1; k >= 0 && w.from + k < w.to) {
      return absl::StrCat(w.text, Describe(lists_[w.list].tags[w.from + k]));
    }
    std::string out = w.text, sep;
    std::set<std::string> seen;
    for (uint32_t i = w.from; i < w.to && out.size() < 200; ++i) {
      std::string d = Describe(lists_[w.list].tags[i]);
      if (seen.insert(d).second) absl::StrAppend(&out, sep, d), sep = ", ";
    }
    return out;
  }

 private:
  // Calls fn on each message in the batch's pages, in order, until it
  // returns false.
  template <typename F>
  void ForEachMessage(F fn) {
    const int n = nftnl_batch_iovec_len(b_);
    std::vector<iovec> iov(n);
    nftnl_batch_iovec(b_, iov.data(), n);
    for (const iovec& v : iov) {
      char* p = static_cast<char*>(v.iov_base);
      size_t left = v.iov_len;
      while (left >= sizeof(nlmsghdr)) {
        auto* nlh = reinterpret_cast<nlmsghdr*>(p);
        if (!fn(nlh)) return;
        const size_t len = NLMSG_ALIGN(nlh->nlmsg_len);
        p += len;
        left -= std::min(left, len);
      }
    }
  }

  // The position in its message's element list of the element whose
  // attribute starts `offset` bytes into the message; -1 if none does.
  static int ElementAt(const nlmsghdr* nlh, uint32_t offset) {
    if (nlh == nullptr) return -1;
    for (const nlattr* attr : Attrs(nlh, sizeof(nfgenmsg))) {
      if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
      int k = 0;
      for (const nlattr* elem : Nested(attr)) {
        if (reinterpret_cast<const char*>(elem) - reinterpret_cast<const char*>(nlh) == offset) return k;
        ++k;
      }
    }
    return -1;
  }

  static std::string ChainWhat(const std::string& name, const std::string& owner) {
    return owner.empty() ? absl::StrCat("chain ", name) : absl::StrCat(owner, " (chain ", name, ")");
  }

  std::string table_;
  uint32_t own_seq_ = 1;
  uint32_t* seq_;
  nftnl_batch* b_;
  uint32_t first_seq_ = 0;
  uint32_t messages_ = 0;
  uint32_t set_id_ = 0;
  // What each message is about: a text, and for element messages the
  // range of their tags in lists_[list].
  struct About {
    std::string text;
    int list = -1;
    uint32_t from = 0, to = 0;
  };
  std::vector<About> whats_;
  std::vector<ElemList> lists_;
};

// --- expression helpers: each emits what nft emits for the same text ------

nftnl_expr* Add(nftnl_rule* r, const char* name) {
  nftnl_expr* e = nftnl_expr_alloc(name);
  nftnl_rule_add_expr(r, e);
  return e;
}

void Meta(nftnl_rule* r, uint32_t key, uint32_t dreg) {
  nftnl_expr* e = Add(r, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
}

void MetaSet(nftnl_rule* r, uint32_t key, uint32_t sreg) {
  nftnl_expr* e = Add(r, "meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, sreg);
}

void Ct(nftnl_rule* r, uint32_t key, uint32_t dreg, int dir = -1) {
  nftnl_expr* e = Add(r, "ct");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, dreg);
  if (dir >= 0) nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, static_cast<uint8_t>(dir));
}

void CtSet(nftnl_rule* r, uint32_t key, uint32_t sreg) {
  nftnl_expr* e = Add(r, "ct");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, sreg);
}

void Cmp(nftnl_rule* r, uint32_t sreg, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = Add(r, "cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

void CmpU32(nftnl_rule* r, uint32_t sreg, uint32_t op, uint32_t v) { Cmp(r, sreg, op, &v, 4); }

void Bitwise(nftnl_rule* r, uint32_t reg, const void* mask, uint32_t len) {
  std::vector<uint8_t> zero(len, 0);
  nftnl_expr* e = Add(r, "bitwise");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero.data(), len);
}

void Payload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = Add(r, "payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
}

void Immediate(nftnl_rule* r, uint32_t dreg, const void* data, uint32_t len) {
  nftnl_expr* e = Add(r, "immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
  nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
}

void Verdict(nftnl_rule* r, uint32_t code, const char* chain = nullptr) {
  nftnl_expr* e = Add(r, "immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, code);
  if (chain != nullptr) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
}

void Lookup(nftnl_rule* r, const std::string& set, uint32_t sreg, int dreg = -1) {
  nftnl_expr* e = Add(r, "lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
  if (dreg >= 0) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, static_cast<uint32_t>(dreg));
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
}

void Fib(nftnl_rule* r, uint32_t flags) {
  nftnl_expr* e = Add(r, "fib");
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, flags);
  CmpU32(r, NFT_REG_1, NFT_CMP_EQ, kRtnLocal);
}

void Masq(nftnl_rule* r) { Add(r, "masq"); }

// "reject" in an inet table: ICMPX port unreachable (TCP clients see a refusal).
void Reject(nftnl_rule* r) {
  nftnl_expr* e = Add(r, "reject");
  nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
  nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
}

void MatchNfproto(nftnl_rule* r, Family fam) {
  Meta(r, NFT_META_NFPROTO, NFT_REG_1);
  const uint8_t proto = fam == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
}

uint32_t SaddrOffset(Family f) { return f == Family::kV4 ? 12 : 8; }
uint32_t DaddrOffset(Family f) { return f == Family::kV4 ? 16 : 24; }

void LoadAddr(nftnl_rule* r, Family f, bool source, uint32_t dreg) {
  Payload(r, NFT_PAYLOAD_NETWORK_HEADER, source ? SaddrOffset(f) : DaddrOffset(f), AddrLen(f), dreg);
}

// "ip saddr . ip daddr . meta l4proto . th dport" into registers from reg 1.
void LoadAffinityKey(nftnl_rule* r, Family f) {
  MatchNfproto(r, f);
  const bool v4 = f == Family::kV4;
  LoadAddr(r, f, true, NFT_REG_1);
  LoadAddr(r, f, false, v4 ? NFT_REG32_01 : NFT_REG_2);
  Meta(r, NFT_META_L4PROTO, v4 ? NFT_REG32_02 : NFT_REG_3);
  Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, v4 ? NFT_REG32_03 : NFT_REG32_09);
}

// "ip daddr . meta l4proto . th dport" into registers from reg 1.
void LoadFrontendKey(nftnl_rule* r, Family f) {
  const bool v4 = f == Family::kV4;
  LoadAddr(r, f, false, NFT_REG_1);
  Meta(r, NFT_META_L4PROTO, v4 ? NFT_REG32_01 : NFT_REG_2);
  Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, v4 ? NFT_REG32_02 : NFT_REG32_05);
}

// "ip saddr <prefix>": full load, mask when it is a real prefix, compare.
void MatchSourcePrefix(nftnl_rule* r, const Cidr& c) {
  const Family f = c.addr.family;
  MatchNfproto(r, f);
  LoadAddr(r, f, true, NFT_REG_1);
  const uint32_t len = AddrLen(f);
  if (c.prefix_len < static_cast<int>(len * 8)) {
    uint8_t mask[16] = {};
    for (uint32_t i = 0; i < len; ++i) {
      mask[i] = static_cast<uint8_t>(0xff00 >> std::clamp(c.prefix_len - static_cast<int>(i) * 8, 0, 8));
    }
    Bitwise(r, NFT_REG_1, mask, len);
  }
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, c.addr.bytes.data(), len);
}

void MasqueradeLabel(nftnl_rule* r) {
  uint8_t label[16] = {};
  label[kMasqueradeLabel / 8] = static_cast<uint8_t>(1u << (kMasqueradeLabel % 8));
  Immediate(r, NFT_REG_1, label, sizeof(label));
  CtSet(r, NFT_CT_LABELS, NFT_REG_1);
}

void BuildServiceRule(nftnl_rule* r, const Rule& rule) {
  const Family f = rule.family;
  switch (rule.match) {
    case Rule::Match::kAny: break;
    case Rule::Match::kLocalSource: Fib(r, NFTA_FIB_F_SADDR); break;
    case Rule::Match::kClusterSource:
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_1);
      Lookup(r, absl::StrCat("cluster-cidrs", Digit(f)), NFT_REG_1);
      break;
    case Rule::Match::kSourcePrefix: MatchSourcePrefix(r, rule.prefix); break;
  }
  if (rule.save_mark) {
    Meta(r, NFT_META_MARK, NFT_REG_1);
    CtSet(r, NFT_CT_MARK, NFT_REG_1);
  }
  if (rule.masquerade) MasqueradeLabel(r);
  switch (rule.ticket) {
    case Rule::Ticket::kNone: break;
    case Rule::Ticket::kRandom:
    case Rule::Ticket::kRoundRobin: {
      nftnl_expr* e = Add(r, "numgen");
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE,
                         rule.ticket == Rule::Ticket::kRandom ? NFT_NG_RANDOM : NFT_NG_INCREMENTAL);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, rule.modulus);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, rule.offset);
      MetaSet(r, NFT_META_MARK, NFT_REG_1);
      break;
    }
    case Rule::Ticket::kSourceHash: {
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_2);
      nftnl_expr* e = Add(r, "hash");
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SREG, NFT_REG_2);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_DREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_LEN, AddrLen(f));
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_MODULUS, rule.modulus);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SEED, rule.seed);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_OFFSET, rule.offset);
      MetaSet(r, NFT_META_MARK, NFT_REG_1);
      break;
    }
    case Rule::Ticket::kAffinity:
      LoadAffinityKey(r, f);
      Lookup(r, absl::StrCat("affinity", Digit(f)), NFT_REG_1, NFT_REG_1);
      MetaSet(r, NFT_META_MARK, NFT_REG_1);
      break;
  }
  if (rule.affinity_timeout_s > 0) {
    LoadAffinityKey(r, f);
    const uint32_t data_reg = f == Family::kV4 ? NFT_REG_2 : NFT_REG32_10;
    Meta(r, NFT_META_MARK, data_reg);
    nftnl_expr* e = Add(r, "dynset");
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA, data_reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
    nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, uint64_t{rule.affinity_timeout_s} * 1000);
    nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, absl::StrCat("affinity", Digit(f)).c_str());
  }
  switch (rule.verdict) {
    case Rule::Verdict::kNone: break;
    case Rule::Verdict::kGoto: Verdict(r, NFT_GOTO, rule.target.c_str()); break;
    case Rule::Verdict::kDrop: Verdict(r, NF_DROP); break;
  }
}

// --- the fixed part of the table ---------------------------------------

void RestoreMarkRule(nftnl_rule* r) {
  Meta(r, NFT_META_MARK, NFT_REG_1);
  const uint32_t bit = kTicketBit;
  Bitwise(r, NFT_REG_1, &bit, 4);
  CmpU32(r, NFT_REG_1, NFT_CMP_EQ, kTicketBit);
  Ct(r, NFT_CT_MARK, NFT_REG_1);
  MetaSet(r, NFT_META_MARK, NFT_REG_1);
  const uint32_t zero = 0;
  Immediate(r, NFT_REG_1, &zero, 4);
  CtSet(r, NFT_CT_MARK, NFT_REG_1);
}

void PickRule(nftnl_rule* r, Family f, L4Proto proto, const std::string& map) {
  const uint8_t p = static_cast<uint8_t>(proto);
  Meta(r, NFT_META_L4PROTO, NFT_REG_1);
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, &p, 1);
  Meta(r, NFT_META_MARK, NFT_REG_1);
  nftnl_expr* e = Add(r, "byteorder");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, 4);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, 4);
  Lookup(r, map, NFT_REG_1, NFT_REG_1);
  const uint32_t proto_reg = f == Family::kV4 ? NFT_REG32_01 : NFT_REG_2;
  nftnl_expr* n = Add(r, "nat");
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_FAMILY, f == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG_1);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_PROTO_MIN, proto_reg);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_reg);
  nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_FLAGS, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
}

void AddShard(Batch& b, uint32_t shard) {
  for (Family f : {Family::kV4, Family::kV6}) {
    SetSpec spec;
    spec.name = BackendsMapName(f, shard);
    spec.flags = NFT_SET_MAP | NFT_SET_INTERVAL;
    spec.key_type = kTypeMark;
    spec.key_len = 4;
    spec.data_type = Concat({AddrType(f), kTypeInetService});
    spec.data_len = AddrLen(f) + 4;
    spec.byteorder_udata = true;
    b.Set(spec);
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    const std::string chain = PickChainName(f, shard);
    const std::string map = BackendsMapName(f, shard);
    b.NewChain(chain, "");
    for (L4Proto p : {L4Proto::kTcp, L4Proto::kUdp, L4Proto::kSctp}) {
      b.Rule(chain, absl::StrCat("chain ", chain), [&](nftnl_rule* r) { PickRule(r, f, p, map); });
    }
    b.Rule(chain, absl::StrCat("chain ", chain), [](nftnl_rule* r) {
      Meta(r, NFT_META_MARK, NFT_REG_1);
      const uint32_t bit = kLocalBit;
      Bitwise(r, NFT_REG_1, &bit, 4);
      CmpU32(r, NFT_REG_1, NFT_CMP_EQ, kLocalBit);
      Verdict(r, NF_DROP);
    });
    b.Rule(chain, absl::StrCat("chain ", chain), [](nftnl_rule* r) { Reject(r); });
  }
}

void AddSkeleton(Batch& b, const Ruleset& rs) {
  // Created in the order `nft list` prints them (creation order).
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Set({absl::StrCat("service-ips", Digit(f)), NFT_SET_MAP,
           Concat({AddrType(f), kTypeInetProto, kTypeInetService}), AddrLen(f) + 8, NFT_DATA_VERDICT, 0, 0, false});
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Set({absl::StrCat("nodeports", Digit(f)), NFT_SET_MAP, Concat({kTypeInetProto, kTypeInetService}), 8,
           NFT_DATA_VERDICT, 0, 0, false});
  }
  for (const char* name : {"cluster-ips", "cluster-cidrs", "nodeport-addrs"}) {
    const uint32_t flags = std::string(name) == "cluster-ips" ? 0 : NFT_SET_INTERVAL;
    for (Family f : {Family::kV4, Family::kV6}) {
      b.Set({absl::StrCat(name, Digit(f)), flags, AddrType(f), AddrLen(f), 0, 0, 0, false});
    }
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Set({absl::StrCat("hairpin", Digit(f)), 0, Concat({AddrType(f), AddrType(f)}), AddrLen(f) * 2, 0, 0, 0,
           false});
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Set({absl::StrCat("affinity", Digit(f)), NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL,
           Concat({AddrType(f), AddrType(f), kTypeInetProto, kTypeInetService}), AddrLen(f) * 2 + 8, kTypeMark, 4,
           kAffinitySize, false});
  }
  b.NewChain(kServicesChain, "");
  b.NewChain("prerouting", "", NF_INET_PRE_ROUTING, "nat", -100);
  b.NewChain("output", "", NF_INET_LOCAL_OUT, "nat", -100);
  b.NewChain("postrouting", "", NF_INET_POST_ROUTING, "nat", 100);
  b.NewChain("masquerading", "");
  b.NewChain("mark-restore", "", NF_INET_PRE_ROUTING, "filter", -99);
  b.NewChain("mark-restore-output", "", NF_INET_LOCAL_OUT, "route", -99);

  const std::string what = "chain services";
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Rule(kServicesChain, what, [&](nftnl_rule* r) {
      MatchNfproto(r, f);
      LoadFrontendKey(r, f);
      Lookup(r, absl::StrCat("service-ips", Digit(f)), NFT_REG_1, NFT_REG_VERDICT);
    });
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Rule(kServicesChain, what, [&](nftnl_rule* r) {
      MatchNfproto(r, f);
      LoadAddr(r, f, false, NFT_REG_1);
      Lookup(r, absl::StrCat("cluster-ips", Digit(f)), NFT_REG_1);
      Reject(r);
    });
  }
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Rule(kServicesChain, what, [&](nftnl_rule* r) {
      if (rs.node.nodeport_cidrs.empty()) {
        Fib(r, NFTA_FIB_F_DADDR);
        MatchNfproto(r, f);
        LoadAddr(r, f, false, NFT_REG_1);
        if (f == Family::kV4) {
          const uint32_t mask = htonl(0xff000000u), loop = htonl(0x7f000000u);
          Bitwise(r, NFT_REG_1, &mask, 4);
          Cmp(r, NFT_REG_1, NFT_CMP_NEQ, &loop, 4);
        } else {
          uint8_t loop[16] = {};
          loop[15] = 1;
          Cmp(r, NFT_REG_1, NFT_CMP_NEQ, loop, 16);
        }
      } else {
        MatchNfproto(r, f);
        LoadAddr(r, f, false, NFT_REG_1);
        Lookup(r, absl::StrCat("nodeport-addrs", Digit(f)), NFT_REG_1);
      }
      Meta(r, NFT_META_L4PROTO, NFT_REG_1);
      Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_01);
      Lookup(r, absl::StrCat("nodeports", Digit(f)), NFT_REG_1, NFT_REG_VERDICT);
    });
  }
  for (const char* base : {"prerouting", "output"}) {
    b.Rule(base, absl::StrCat("chain ", base), [](nftnl_rule* r) { Verdict(r, NFT_JUMP, kServicesChain); });
  }
  b.Rule("postrouting", "chain postrouting", [](nftnl_rule* r) {
    Ct(r, NFT_CT_STATUS, NFT_REG_1);
    const uint32_t dnat = IPS_DST_NAT;
    Bitwise(r, NFT_REG_1, &dnat, 4);
    CmpU32(r, NFT_REG_1, NFT_CMP_NEQ, 0);
    Verdict(r, NFT_JUMP, "masquerading");
  });
  const std::string mw = "chain masquerading";
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Rule("masquerading", mw, [&](nftnl_rule* r) {
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_1);
      LoadAddr(r, f, false, f == Family::kV4 ? NFT_REG32_01 : NFT_REG_2);
      Lookup(r, absl::StrCat("hairpin", Digit(f)), NFT_REG_1);
      Masq(r);
    });
  }
  // External traffic under policy CLUSTER is masqueraded whatever its
  // source, pods included (replies must come back through this node).
  b.Rule("masquerading", mw, [](nftnl_rule* r) {
    Ct(r, NFT_CT_LABELS, NFT_REG_1);
    uint8_t label[16] = {}, zero[16] = {};
    label[kMasqueradeLabel / 8] = static_cast<uint8_t>(1u << (kMasqueradeLabel % 8));
    Bitwise(r, NFT_REG_1, label, 16);
    Cmp(r, NFT_REG_1, NFT_CMP_NEQ, zero, 16);
    Masq(r);
  });
  for (Family f : {Family::kV4, Family::kV6}) {
    b.Rule("masquerading", mw, [&](nftnl_rule* r) {
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_1);
      Lookup(r, absl::StrCat("cluster-cidrs", Digit(f)), NFT_REG_1);
      Verdict(r, NFT_RETURN);
    });
  }
  if (!rs.node.cluster_cidrs.empty()) {
    for (Family f : {Family::kV4, Family::kV6}) {
      b.Rule("masquerading", mw, [&](nftnl_rule* r) {
        Ct(r, f == Family::kV4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, NFT_REG_1, IP_CT_DIR_ORIGINAL);
        Lookup(r, absl::StrCat("cluster-ips", Digit(f)), NFT_REG_1);
        Masq(r);
      });
    }
  }
  for (const char* chain : {"mark-restore", "mark-restore-output"}) {
    b.Rule(chain, absl::StrCat("chain ", chain), RestoreMarkRule);
  }
}

// --- elements -------------------------------------------------------------

// The address after `a`, or false when `a` is the last one.
bool Next(IpAddr* a) {
  for (int i = static_cast<int>(a->size()) - 1; i >= 0; --i) {
    if (++a->bytes[i] != 0) return true;
  }
  return false;
}

// Pending element changes, per set.
class ElemChanges {
 public:
  ElemList& Set(const std::string& name) {
    if (last_ == nullptr || last_name_ != name) {
      last_name_ = name;
      last_ = &sets_[name];
    }
    return *last_;
  }
  static void Add(ElemList& list, const Elem& e, const Tag& tag) {
    list.elems.push_back(e);
    list.tags.push_back(tag);
  }
  void Emit(Batch& batch, uint16_t type) {
    for (auto& [set, list] : sets_) batch.Elements(type, set, std::move(list));
    sets_.clear();
    last_ = nullptr;
  }

 private:
  std::map<std::string, ElemList> sets_;
  std::string last_name_;
  ElemList* last_ = nullptr;
};

// Appends bytes to a fixed-size element buffer.
template <size_t N>
void Put(std::array<uint8_t, N>* buf, uint8_t* len, const uint8_t* p, size_t n) {
  memcpy(buf->data() + *len, p, n);
  *len = static_cast<uint8_t>(*len + n);
}
void PutAddr(Elem* e, const IpAddr& a) { Put(&e->key, &e->key_len, a.bytes.data(), a.size()); }
void PutProtoPort(Elem* e, L4Proto proto, uint16_t port) {
  const uint8_t pp[8] = {static_cast<uint8_t>(proto), 0, 0, 0, static_cast<uint8_t>(port >> 8),
                         static_cast<uint8_t>(port), 0, 0};
  Put(&e->key, &e->key_len, pp, sizeof(pp));
}
void PutBe32(Elem* e, uint32_t v) {
  const uint8_t b[4] = {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
                        static_cast<uint8_t>(v)};
  Put(&e->key, &e->key_len, b, sizeof(b));
}

// An element of a verdict map (service-ips, nodeports): `key` goes to t.chain.
void GotoElem(ElemChanges* c, const std::string& set, Elem e, Tag tag, const VmapTarget& t) {
  e.chain = &t.chain;
  tag.owner = &t.owner;
  ElemChanges::Add(c->Set(set), e, tag);
}

void VmapElem(ElemChanges* c, const VmapKey& k, const VmapTarget& t) {
  static const std::string kNames[2] = {"service-ips4", "service-ips6"};
  Elem e;
  PutAddr(&e, k.addr);
  PutProtoPort(&e, k.proto, k.port);
  Tag tag;
  tag.kind = Tag::Kind::kFrontend;
  tag.addr = k.addr;
  tag.proto = k.proto;
  tag.port = k.port;
  GotoElem(c, kNames[k.addr.family == Family::kV4 ? 0 : 1], e, tag, t);
}

void NodePortElem(ElemChanges* c, const NodePortKey& k, const VmapTarget& t) {
  static const std::string kNames[2] = {"nodeports4", "nodeports6"};
  Elem e;
  PutProtoPort(&e, k.proto, k.port);
  Tag tag;
  tag.kind = Tag::Kind::kNodePort;
  tag.proto = k.proto;
  tag.port = k.port;
  GotoElem(c, kNames[k.family == Family::kV4 ? 0 : 1], e, tag, t);
}

void AddrElem(ElemChanges* c, const char* set, const IpAddr& a, bool pair) {
  Elem e;
  PutAddr(&e, a);
  if (pair) PutAddr(&e, a);
  Tag tag;
  tag.addr = a;
  ElemChanges::Add(c->Set(absl::StrCat(set, Digit(a.family))), e, tag);
}

void CidrElems(ElemChanges* c, const char* set, const Cidr& cidr) {
  ElemList& list = c->Set(absl::StrCat(set, Digit(cidr.addr.family)));
  Tag tag;
  tag.kind = Tag::Kind::kCidr;
  tag.addr = cidr.addr;
  tag.prefix = cidr.prefix_len;
  Elem start;
  PutAddr(&start, cidr.addr);
  ElemChanges::Add(list, start, tag);
  IpAddr last = cidr.Last();
  if (Next(&last)) {
    Elem end;
    PutAddr(&end, last);
    end.interval_end = true;
    ElemChanges::Add(list, end, tag);
  }
}

uint32_t ShardOf(uint32_t ticket);

void IntervalElems(ElemChanges* c, int fam, uint32_t first, const Interval& iv, bool with_data) {
  const uint32_t shard = ShardOf(first);
  // Set names, built once per shard rather than per element.
  static thread_local std::vector<std::string> names[2];
  while (names[fam].size() <= shard) names[fam].push_back(BackendsMapName(FamOf(fam), names[fam].size()));
  ElemList& list = c->Set(names[fam][shard]);
  Tag tag;
  tag.kind = Tag::Kind::kInterval;
  tag.ticket = first;
  tag.addr = iv.addr;
  tag.port = iv.port;
  Elem start;
  PutBe32(&start, first);
  if (with_data) {
    Put(&start.data, &start.data_len, iv.addr.bytes.data(), iv.addr.size());
    const uint8_t port[4] = {static_cast<uint8_t>(iv.port >> 8), static_cast<uint8_t>(iv.port), 0, 0};
    Put(&start.data, &start.data_len, port, sizeof(port));
  }
  ElemChanges::Add(list, start, tag);
  Elem end;
  PutBe32(&end, iv.last + 1);
  end.interval_end = true;
  ElemChanges::Add(list, end, tag);
}

void AddChainRules(Batch& b, const std::string& name, const Chain& chain) {
  for (const Rule& rule : chain.rules) {
    b.Rule(name, absl::StrCat(chain.owner, " (chain ", name, ")"),
           [&](nftnl_rule* r) { BuildServiceRule(r, rule); });
  }
}

uint32_t ShardOf(uint32_t ticket) { return ((ticket & ~(kTicketBit | kLocalBit)) >> kIndexShift) >> kShardShift; }

// The elements of the backends maps of shards [from, to).
void CollectBackends(const Ruleset& rs, bool with_data, uint32_t from, uint32_t to, ElemChanges* c) {
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : rs.backends[fam]) {
      const uint32_t shard = ShardOf(first);
      if (shard >= from && shard < to) IntervalElems(c, fam, first, iv, with_data);
    }
  }
}

// The elements of every set but the backends maps.
void CollectFrontends(const Ruleset& rs, ElemChanges* c) {
  for (const auto& [k, t] : rs.vmap) VmapElem(c, k, t);
  for (const auto& [k, t] : rs.nodeports) NodePortElem(c, k, t);
  for (const auto& [a, refs] : rs.cluster_ips) AddrElem(c, "cluster-ips", a, false);
  for (const auto& [a, refs] : rs.hairpin) AddrElem(c, "hairpin", a, true);
}

// Every element of `rs` (with its data when `with_data`).
void CollectElements(const Ruleset& rs, bool with_data, ElemChanges* c) {
  CollectFrontends(rs, c);
  CollectBackends(rs, with_data, 0, UINT32_MAX, c);
}

// The full table: skeleton, every chain, every element; the elements of the
// backends maps of shards [split, ...) go into `rest` instead (built on
// another thread: they are most of a large table's messages).
void BuildFull(Batch& b, const Ruleset& to, uint32_t split) {
  // Create-if-missing then delete, so the delete cannot fail; the new table
  // replaces the old one when the batch commits.
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
  b.Table(NFT_MSG_DELTABLE, 0);
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL);
  AddSkeleton(b, to);
  for (uint32_t shard = 0; shard < to.shards; ++shard) AddShard(b, shard);
  for (const auto& [name, chain] : to.chains) b.NewChain(name, chain.owner);
  for (const auto& [name, chain] : to.chains) AddChainRules(b, name, chain);
  ElemChanges add;
  for (const Cidr& c : to.node.cluster_cidrs) CidrElems(&add, "cluster-cidrs", c);
  for (const Cidr& c : to.node.nodeport_cidrs) CidrElems(&add, "nodeport-addrs", c);
  CollectFrontends(to, &add);
  CollectBackends(to, true, 0, split, &add);
  add.Emit(b, NFT_MSG_NEWSETELEM);
}

void BuildFullRest(Batch& rest, const Ruleset& to, uint32_t split) {
  ElemChanges add;
  CollectBackends(to, true, split, UINT32_MAX, &add);
  add.Emit(rest, NFT_MSG_NEWSETELEM);
}

// The shard from which BuildFullRest takes over: about 60% of the backends
// elements go to it, since the first part also builds everything else.
uint32_t SplitShard(const Ruleset& to) {
  std::vector<size_t> per_shard(to.shards + 1, 0);
  size_t total = 0;
  for (int fam = 0; fam < 2; ++fam) {
    for (const auto& [first, iv] : to.backends[fam]) {
      ++per_shard[std::min<uint32_t>(ShardOf(first), to.shards)];
      ++total;
    }
  }
  size_t before = 0;
  for (uint32_t shard = 0; shard < per_shard.size(); ++shard) {
    if (before * 10 >= total * 4) return shard;
    before += per_shard[shard];
  }
  return static_cast<uint32_t>(per_shard.size());
}

// A change, in an order the kernel accepts: elements that go away release
// their chains before the chains are deleted, and chains exist before
// elements point at them.
void BuildDelta(Batch& b, uint32_t base_shards, const Ruleset& removed, const Ruleset& added) {
  ElemChanges del, add;
  CollectElements(removed, false, &del);
  CollectElements(added, true, &add);
  del.Emit(b, NFT_MSG_DELSETELEM);
  for (uint32_t shard = base_shards; shard < added.shards; ++shard) AddShard(b, shard);
  for (const auto& [name, chain] : added.chains) {
    if (!removed.chains.count(name)) b.NewChain(name, chain.owner);
  }
  for (const auto& [name, chain] : added.chains) {
    if (removed.chains.count(name)) b.FlushChain(name, chain.owner);
    AddChainRules(b, name, chain);
  }
  add.Emit(b, NFT_MSG_NEWSETELEM);
  // Chains that jump to others go first, so each is unreferenced when it goes.
  for (const char* kind : {"fw", "ext", ""}) {
    for (const auto& [name, chain] : removed.chains) {
      const bool mine = *kind ? name.rfind(kind, 0) == 0
                              : name.rfind("fw", 0) != 0 && name.rfind("ext", 0) != 0;
      if (mine && !added.chains.count(name)) b.DelChain(name, chain.owner);
    }
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
  // Error replies name the refused attribute (which element of a message)
  // and do not echo the whole message. Best effort: without them an error
  // names the message only.
  const int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  return std::unique_ptr<NftWriter>(new NftWriter(nl));
}

NftWriter::~NftWriter() { mnl_socket_close(nl_); }

namespace {

// The offset of the attribute an error reply blames (extended ACK, see
// NftWriter::Create), or 0.
uint32_t BadAttrOffset(const nlmsghdr* nlh) {
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return 0;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  // The TLVs follow the error and the refused message's header, and its
  // payload unless the reply is capped.
  size_t at = sizeof(nlmsgerr);
  if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) at += err->msg.nlmsg_len - sizeof(nlmsghdr);
  for (const nlattr* attr : Attrs(nlh, at)) {
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS && mnl_attr_get_payload_len(attr) >= 4) {
      return mnl_attr_get_u32(attr);
    }
  }
  return 0;
}

// Sends the batch and collects every error the kernel reports for it. The
// kernel handles a batch synchronously inside sendmsg(), so all replies are
// queued when it returns; a batch without errors gets no reply at all.
absl::Status SendBatch(mnl_socket* nl, const std::vector<Batch*>& parts, uint64_t* bytes) {
  std::vector<iovec> iov;
  for (Batch* b : parts) {
    const int n = nftnl_batch_iovec_len(b->raw());
    const size_t at = iov.size();
    iov.resize(at + n);
    nftnl_batch_iovec(b->raw(), iov.data() + at, n);
  }
  // What a sequence number's message was about.
  auto what = [&parts](uint32_t seq, uint32_t bad_attr) {
    for (Batch* b : parts) {
      if (b->Holds(seq)) return b->What(seq, bad_attr);
    }
    return std::string("the batch");
  };
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
        first_error = what(nlh->nlmsg_seq, BadAttrOffset(nlh));
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

// Sends the parts as one batch (see SendBatch); `names` and `more_names`
// name the owners of tickets in errors.
absl::Status SendParts(mnl_socket* nl, const std::vector<Batch*>& parts, bool full, const Ruleset& names,
                       const Ruleset& more_names, absl::Time start, CommitStats* stats,
                       const std::function<void()>& alongside = nullptr) {
  uint32_t messages = 0;
  for (Batch* b : parts) messages += b->messages();
  const absl::Time built = absl::Now();
  if (stats != nullptr) {
    stats->messages = messages;
    stats->full = full;
    stats->build = built - start;
  }
  absl::Status s;
  auto send = [&] {
    if (messages > 0) s = SendBatch(nl, parts, stats != nullptr ? &stats->bytes : nullptr);
  };
  if (alongside) {
    RunAlongside(send, alongside);
  } else {
    send();
  }
  if (stats != nullptr) stats->kernel = absl::Now() - built;
  if (!s.ok()) {
    // Element errors name a ticket; say whose it is.
    std::string msg(s.message());
    const size_t at = msg.find("ticket 0x");
    if (at != std::string::npos) {
      const uint32_t ticket = static_cast<uint32_t>(std::stoul(msg.substr(at + 7, 10), nullptr, 16));
      std::string owner = OwnerOfTicket(names, ticket);
      if (owner == kUnknownOwner) owner = OwnerOfTicket(more_names, ticket);
      msg.insert(at, owner + " ");
      return absl::Status(s.code(), msg);
    }
  }
  return s;
}

}  // namespace

absl::Status NftWriter::CommitFull(const Ruleset& to, CommitStats* stats, const std::function<void()>& alongside) {
  const absl::Time start = absl::Now();
  // Built in two parts at once; the second one's messages follow the
  // first's, then a last part ends the batch. One sendmsg, one transaction.
  const uint32_t split = SplitShard(to);
  Batch first(to.table, &seq_);
  Batch rest(to.table, nullptr, Batch::Kind::kFragment);
  RunAlongside([&] { BuildFull(first, to, split); }, [&] { BuildFullRest(rest, to, split); });
  rest.Renumber(&seq_);
  Batch last(to.table, nullptr, Batch::Kind::kFragment);
  last.End(&seq_);
  return SendParts(nl_, {&first, &rest, &last}, true, to, to, start, stats, alongside);
}

absl::Status NftWriter::CommitDelta(const std::string& table, uint32_t base_shards, const Ruleset& removed,
                                    const Ruleset& added, CommitStats* stats) {
  const absl::Time start = absl::Now();
  Batch b(table, &seq_);
  BuildDelta(b, base_shards, removed, added);
  b.End(&seq_);
  return SendParts(nl_, {&b}, false, added, removed, start, stats);
}

}  // namespace nftproxy::dp
