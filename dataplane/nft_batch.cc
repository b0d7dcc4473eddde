#include "dataplane/nft_batch.h"

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/nft_expr.h"

namespace nftproxy::dp {
namespace {

constexpr size_t kElemsPerMessage = 256;
constexpr uint32_t kPageSize = 256 * 1024;
constexpr uint32_t kPageOverrun = 256 * 1024;
// nft's set userdata: key/data byte order, so ranges of host-order keys print right.
constexpr uint8_t kUdataKeyByteorder = 0, kUdataDataByteorder = 1;
constexpr uint32_t kHostEndian = 1, kBigEndian = 2;

std::string ChainWhat(const std::string& name, const std::string& owner) {
  return owner.empty() ? absl::StrCat("chain ", name) : absl::StrCat(owner, " (chain ", name, ")");
}

uint32_t HookNum(Hook h) {
  switch (h) {
    case Hook::kPrerouting: return NF_INET_PRE_ROUTING;
    case Hook::kOutput: return NF_INET_LOCAL_OUT;
    case Hook::kPostrouting: return NF_INET_POST_ROUTING;
    case Hook::kNone: break;
  }
  return 0;
}

// The position in its message's element list of the element whose
// attribute starts `offset` bytes into the message; -1 if none does.
int ElementAt(const nlmsghdr* nlh, uint32_t offset) {
  if (nlh == nullptr) return -1;
  for (const nlattr* attr : NetlinkAttrs(nlh, sizeof(nfgenmsg))) {
    if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
    int k = 0;
    for (const nlattr* elem : NestedAttrs(attr)) {
      if (reinterpret_cast<const char*>(elem) - reinterpret_cast<const char*>(nlh) == offset) return k;
      ++k;
    }
  }
  return -1;
}

}  // namespace

Batch::Batch(const std::string& table, uint32_t* seq, Kind kind)
    : table_(table), seq_(kind == Kind::kFirst ? seq : &own_seq_) {
  b_ = nftnl_batch_alloc(kPageSize, kPageOverrun);
  if (kind == Kind::kFirst) {
    nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq_)++);
    nftnl_batch_update(b_);
  }
}

Batch::~Batch() { nftnl_batch_free(b_); }

template <typename F>
void Batch::ForEachMessage(F fn) {
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

void Batch::Renumber(uint32_t* seq) {
  first_seq_ = *seq;
  ForEachMessage([seq](nlmsghdr* nlh) {
    nlh->nlmsg_seq = (*seq)++;
    return true;
  });
}

const nlmsghdr* Batch::Find(uint32_t seq) {
  const nlmsghdr* found = nullptr;
  ForEachMessage([&](nlmsghdr* nlh) {
    if (nlh->nlmsg_seq == seq) found = nlh;
    return found == nullptr;
  });
  return found;
}

nlmsghdr* Batch::Header(uint16_t type, uint16_t flags, std::string what, int list, uint32_t from, uint32_t to,
                        uint32_t owner_len) {
  first_seq_ = first_seq_ ? first_seq_ : *seq_;
  whats_.push_back(About{std::move(what), list, from, to, owner_len});
  ++messages_;
  return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(b_)), type, NFPROTO_INET, flags, (*seq_)++);
}

void Batch::Done() { nftnl_batch_update(b_); }

nlmsghdr* Batch::ChainHeader(uint16_t type, uint16_t flags, const std::string& chain, const std::string& owner) {
  return Header(type, flags, ChainWhat(chain, owner), -1, 0, 0, static_cast<uint32_t>(owner.size()));
}

void Batch::Table(uint16_t type, uint16_t flags, bool marked) {
  nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, table_.c_str());
  if (marked) {
    // nft's table comment: a userdata TLV that `nft list` prints.
    nftnl_udata_buf* udata = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
    nftnl_udata_put_strz(udata, NFTNL_UDATA_TABLE_COMMENT, kTableComment);
    nftnl_table_set_data(t, NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(udata), nftnl_udata_buf_len(udata));
    nftnl_udata_buf_free(udata);
  }
  nlmsghdr* nlh = Header(type, flags, absl::StrCat("table inet ", table_));
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  Done();
}

void Batch::Set(const SetDef& def) {
  nftnl_set* s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, table_.c_str());
  nftnl_set_set_str(s, NFTNL_SET_NAME, def.name.c_str());
  nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
  nftnl_set_set_u32(s, NFTNL_SET_ID, ++set_id_);
  uint32_t flags = 0;
  if (def.map) flags |= NFT_SET_MAP;
  if (def.interval) flags |= NFT_SET_INTERVAL;
  if (def.dynamic) flags |= NFT_SET_TIMEOUT | NFT_SET_EVAL;
  if (def.counters) flags |= NFT_SET_OBJECT;
  nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags);
  if (def.counters) nftnl_set_set_u32(s, NFTNL_SET_OBJ_TYPE, NFT_OBJECT_COUNTER);
  nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, ConcatType(def.key.data(), def.key.size()));
  nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, ConcatLen(def.key.data(), def.key.size()));
  if (def.map) {
    nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE,
                      def.verdict ? NFT_DATA_VERDICT : ConcatType(def.data.data(), def.data.size()));
    nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, def.verdict ? 0 : ConcatLen(def.data.data(), def.data.size()));
  }
  if (def.size) nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, def.size);
  uint8_t udata[32];
  if (def.host_order_key) {
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
  nlmsghdr* nlh = Header(NFT_MSG_NEWSET, NLM_F_CREATE, absl::StrCat("set ", def.name));
  nftnl_set_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  Done();
}

void Batch::NewChain(const std::string& name, const std::string& owner, const ChainDef* def) {
  nftnl_chain* c = nftnl_chain_alloc();
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
  nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
  if (def != nullptr && def->hook != Hook::kNone) {
    nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, HookNum(def->hook));
    nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, def->priority);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, def->type);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
  }
  nlmsghdr* nlh = ChainHeader(NFT_MSG_NEWCHAIN, NLM_F_CREATE, name, owner);
  nftnl_chain_nlmsg_build_payload(nlh, c);
  nftnl_chain_free(c);
  Done();
}

void Batch::DelChain(const std::string& name, const std::string& owner) {
  nftnl_chain* c = nftnl_chain_alloc();
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table_.c_str());
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
  nlmsghdr* nlh = ChainHeader(NFT_MSG_DELCHAIN, 0, name, owner);
  nftnl_chain_nlmsg_build_payload(nlh, c);
  nftnl_chain_free(c);
  Done();
}

void Batch::FlushChain(const std::string& name, const std::string& owner) {
  nftnl_rule* r = nftnl_rule_alloc();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table_.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, name.c_str());
  nlmsghdr* nlh = ChainHeader(NFT_MSG_DELRULE, 0, name, owner);
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  Done();
}

void Batch::Counter(uint16_t type, const std::string& name, const std::string& owner) {
  nftnl_obj* o = nftnl_obj_alloc();
  nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table_.c_str());
  nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name.c_str());
  nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
  nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_INET);
  std::string what = owner.empty() ? absl::StrCat("counter ", name) : absl::StrCat(owner, " (counter ", name, ")");
  nlmsghdr* nlh = Header(type, type == NFT_MSG_NEWOBJ ? NLM_F_CREATE | NLM_F_EXCL : 0, std::move(what), -1, 0, 0,
                         static_cast<uint32_t>(owner.size()));
  nftnl_obj_nlmsg_build_payload(nlh, o);
  nftnl_obj_free(o);
  Done();
}

void Batch::Rule(const std::string& chain, const std::string& owner, const RuleStmts& rule) {
  nftnl_rule* r = nftnl_rule_alloc();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table_.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
  EncodeRule(r, rule);
  nlmsghdr* nlh = ChainHeader(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, chain, owner);
  nftnl_rule_nlmsg_build_payload(nlh, r);
  nftnl_rule_free(r);
  Done();
}

void Batch::Elements(uint16_t type, const std::string& set, ElemList list) {
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
        } else if (el.objref != nullptr) {
          nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_OBJREF, el.objref->c_str());
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

void Batch::End(uint32_t* seq) {
  nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(b_)), (*seq)++);
  nftnl_batch_update(b_);
}

namespace {

// The owner of an element's tag: its own, or its ticket's.
std::string OwnerOf(const Tag& t, const TicketOwner& owner) {
  if (t.owner != nullptr) return *t.owner;
  if (t.kind == Tag::Kind::kInterval) {
    std::string o = owner(t.ticket);
    if (o != kUnknownOwner) return o;
  }
  return "";
}

}  // namespace

Blame Batch::What(uint32_t seq, uint32_t bad_attr, const TicketOwner& owner) {
  if (!Holds(seq)) return Blame{"the batch", ""};
  const About& w = whats_[seq - first_seq_];
  if (w.list < 0) return Blame{w.text, w.text.substr(0, w.owner_len)};
  const std::vector<Tag>& tags = lists_[w.list].tags;
  // An element message: the kernel names the refused element by the
  // offset of its attribute in the message.
  if (const int k = bad_attr > 0 ? ElementAt(Find(seq), bad_attr) : -1; k >= 0 && w.from + k < w.to) {
    const Tag& t = tags[w.from + k];
    return Blame{absl::StrCat(w.text, Describe(t, &owner)), OwnerOf(t, owner)};
  }
  // Otherwise every distinct element of the message, up to a length; only
  // the first ticket is preceded by its owner.
  Blame out{w.text, ""};
  std::string sep;
  size_t length = out.text.size();
  bool owner_named = false;
  std::set<std::string> seen;
  for (uint32_t i = w.from; i < w.to && length < 200; ++i) {
    std::string d = Describe(tags[i]);
    if (!seen.insert(d).second) continue;
    length += sep.size() + d.size();
    if (tags[i].kind == Tag::Kind::kInterval && !owner_named) {
      d = Describe(tags[i], &owner);
      owner_named = true;
    }
    if (out.owner.empty()) out.owner = OwnerOf(tags[i], owner);
    absl::StrAppend(&out.text, sep, d);
    sep = ", ";
  }
  return out;
}

}  // namespace nftproxy::dp
