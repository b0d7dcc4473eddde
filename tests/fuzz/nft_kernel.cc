#include "tests/fuzz/nft_kernel.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dataplane/netlink_socket.h"

namespace nftproxy::fuzz {
namespace {

// ---- values as nft prints them ----------------------------------------------

// nft's datatype ids (in set declarations) and what the decoder knows.
enum class VType : uint8_t {
  kNone = 0,
  kIpv4 = 7,
  kIpv6 = 8,
  kInetProto = 12,
  kInetService = 13,
  kMark = 19,
  kNfproto = 100,
  kFibAddr,
  kCtStatus,
  kCtLabel,
  kInteger,
};

uint32_t TypeLen(uint32_t id) {
  switch (id) {
    case 7: return 4;
    case 8: return 16;
    default: return 4;  // proto, service and mark take a 4-byte register
  }
}

const char* TypeName(uint32_t id) {
  switch (id) {
    case 7: return "ipv4_addr";
    case 8: return "ipv6_addr";
    case 12: return "inet_proto";
    case 13: return "inet_service";
    case 19: return "mark";
  }
  return nullptr;
}

// A concatenated datatype id split into its parts (6 bits each).
std::vector<uint32_t> SplitType(uint32_t t) {
  std::vector<uint32_t> ids;
  while (t != 0) {
    ids.insert(ids.begin(), t & 0x3f);
    t >>= 6;
  }
  return ids;
}

std::string TypeText(uint32_t concat) {
  std::vector<std::string> parts;
  for (uint32_t id : SplitType(concat)) {
    const char* n = TypeName(id);
    parts.push_back(n ? n : absl::StrCat("<type ", id, ">"));
  }
  return absl::StrJoin(parts, " . ");
}

uint32_t HostU32(const std::string& b) {
  uint32_t v = 0;
  memcpy(&v, b.data(), std::min<size_t>(4, b.size()));
  return v;
}

uint32_t BeU32(const std::string& b) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && i < b.size(); ++i) v = (v << 8) | static_cast<uint8_t>(b[i]);
  return v;
}

std::string Hex(const std::string& b) {
  std::string out = "0x";
  for (unsigned char c : b) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return out;
}

std::string Addr(const std::string& b) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (b.size() == 4) return inet_ntop(AF_INET, b.data(), buf, sizeof(buf));
  if (b.size() == 16) return inet_ntop(AF_INET6, b.data(), buf, sizeof(buf));
  return "<address of " + std::to_string(b.size()) + " bytes " + Hex(b) + ">";
}

std::string ProtoName(uint8_t p) {
  switch (p) {
    case 6: return "tcp";
    case 17: return "udp";
    case 132: return "sctp";
  }
  return std::to_string(p);
}

// One constant of a type, from its bytes (as a register or a set key holds it).
std::string Const(VType t, const std::string& b) {
  switch (t) {
    case VType::kIpv4:
    case VType::kIpv6: return Addr(b);
    case VType::kInetProto: return b.size() == 1 ? ProtoName(static_cast<uint8_t>(b[0])) : "<proto " + Hex(b) + ">";
    case VType::kInetService:
      return b.size() == 2 ? std::to_string(BeU32(std::string(2, '\0') + b)) : "<port " + Hex(b) + ">";
    case VType::kMark: return b.size() == 4 ? absl::StrFormat("0x%08x", HostU32(b)) : "<mark " + Hex(b) + ">";
    case VType::kNfproto:
      if (b.size() == 1 && b[0] == NFPROTO_IPV4) return "ipv4";
      if (b.size() == 1 && b[0] == NFPROTO_IPV6) return "ipv6";
      return "<nfproto " + Hex(b) + ">";
    case VType::kFibAddr: return b.size() == 4 && HostU32(b) == 2 ? "local" : "<addrtype " + Hex(b) + ">";
    default: return Hex(b);
  }
}

// ---- the symbolic register file ----------------------------------------------

struct Val {
  bool set = false;
  bool cont = false;  // the tail of a value that starts in an earlier slot
  std::string text;
  uint32_t len = 0;
  VType type = VType::kNone;
  bool is_const = false;
  std::string bytes;
  bool masked = false;
  std::string mask;
  bool hton = false;
  // A map lookup's result: the map's data types.
  std::vector<uint32_t> data_types;
};

int SlotOf(uint32_t reg) {
  if (reg >= NFT_REG_1 && reg <= NFT_REG_4) return static_cast<int>(reg - NFT_REG_1) * 4;
  if (reg >= NFT_REG32_00 && reg <= NFT_REG32_15) return static_cast<int>(reg - NFT_REG32_00);
  return -1;
}

struct SetState {
  uint32_t flags = 0, key_type = 0, key_len = 0, data_type = 0, data_len = 0, size = 0;
  uint32_t obj_type = 0;  // NFT_SET_OBJECT: the objects' type (a counter here)
  std::string udata;
  // (key, interval end) -> data
  struct Data {
    bool verdict = false;
    uint32_t code = 0;
    std::string chain;
    std::string bytes;
    std::string objref;  // an object map's start element: the counter's name
  };
  std::map<std::pair<std::string, bool>, Data> elems;
  bool Same(const SetState& o) const {
    return flags == o.flags && key_type == o.key_type && key_len == o.key_len && data_type == o.data_type &&
           (data_type == NFT_DATA_VERDICT || data_len == o.data_len) && size == o.size && obj_type == o.obj_type &&
           udata == o.udata;
  }
};

struct RuleState {
  std::string text;
  std::vector<std::string> targets;
  std::vector<std::string> counters;  // named counter objects it uses
};

struct ChainState {
  bool base = false;
  uint32_t hooknum = 0;
  int32_t prio = 0;
  std::string type;
  uint32_t policy = NF_ACCEPT;
  std::vector<RuleState> rules;
};

}  // namespace

struct NftKernel::Table {
  std::string name;
  std::string comment;
  std::map<std::string, SetState> sets;
  std::map<std::string, ChainState> chains;
  std::set<std::string> counters;  // named counter objects
};

namespace {

using Table = NftKernel::Table;

// A refusal: errno and why.
absl::Status Refuse(int err, const std::string& why) {
  return absl::FailedPreconditionError(absl::StrCat(strerror(err), ": ", why));
}

// ---- rules -------------------------------------------------------------------

// The names in the objref expressions of a NEWRULE message, one entry per
// objref expression in order, read as the kernel reads them: by the
// attribute's length (libnftnl 1.2.4 puts them without their NUL, so its
// parser runs into the next attribute when the length is a multiple of 4).
std::string AttrString(const nlattr* a);

struct ObjrefName {
  std::optional<std::string> imm;  // NFTA_OBJREF_IMM_NAME: the object
  std::optional<std::string> set;  // NFTA_OBJREF_SET_NAME: the object map
};

std::vector<ObjrefName> ObjrefNames(const nlmsghdr* nlh) {
  std::vector<ObjrefName> out;
  for (const nlattr* a : dp::NetlinkAttrs(nlh, sizeof(nfgenmsg))) {
    if (mnl_attr_get_type(a) != NFTA_RULE_EXPRESSIONS) continue;
    for (const nlattr* elem : dp::NestedAttrs(a)) {
      bool objref = false;
      for (const nlattr* f : dp::NestedAttrs(elem)) {
        if (mnl_attr_get_type(f) == NFTA_EXPR_NAME) {
          objref = absl::string_view(static_cast<const char*>(mnl_attr_get_payload(f)),
                                     strnlen(static_cast<const char*>(mnl_attr_get_payload(f)),
                                             mnl_attr_get_payload_len(f))) == "objref";
          if (objref) out.emplace_back();
        }
        if (!objref || mnl_attr_get_type(f) != NFTA_EXPR_DATA) continue;
        for (const nlattr* d : dp::NestedAttrs(f)) {
          if (mnl_attr_get_type(d) == NFTA_OBJREF_IMM_NAME) out.back().imm = AttrString(d);
          if (mnl_attr_get_type(d) == NFTA_OBJREF_SET_NAME) out.back().set = AttrString(d);
        }
      }
    }
  }
  return out;
}

class RuleDecoder {
 public:
  RuleDecoder(const Table& t, std::vector<ObjrefName> objref_names)
      : table_(t), objref_names_(std::move(objref_names)) {}

  absl::Status Expr(nftnl_expr* e) {
    const std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    if (name == "payload") return Payload(e);
    if (name == "meta") return Meta(e);
    if (name == "ct") return Ct(e);
    if (name == "cmp") return Cmp(e);
    if (name == "bitwise") return Bitwise(e);
    if (name == "byteorder") return Byteorder(e);
    if (name == "immediate") return Immediate(e);
    if (name == "lookup") return Lookup(e);
    if (name == "fib") return Fib(e);
    if (name == "numgen") return Numgen(e);
    if (name == "hash") return Hash(e);
    if (name == "dynset") return Dynset(e);
    if (name == "nat") return Nat(e);
    if (name == "masq") return Stmt("masquerade");
    if (name == "reject") return Reject(e);
    if (name == "objref") return Objref(e);
    return Stmt("<expression " + name + ">");
  }

  RuleState Finish() {
    RuleState r;
    std::vector<std::string> out;
    for (std::string& s : stmts_) {
      if (!s.empty()) out.push_back(std::move(s));
    }
    r.text = absl::StrJoin(out, " ");
    r.targets = std::move(targets_);
    r.counters = std::move(counters_);
    return r;
  }

 private:
  absl::Status Stmt(std::string s) {
    stmts_.push_back(std::move(s));
    return absl::OkStatus();
  }

  absl::Status Write(uint32_t reg, Val v) {
    const int slot = SlotOf(reg);
    const int n = static_cast<int>((v.len + 3) / 4);
    if (slot < 0 || n == 0 || slot + n > 16) return Refuse(EINVAL, absl::StrCat("bad register ", reg, " for ", v.len, " bytes"));
    v.set = true;
    v.cont = false;
    regs_[slot] = v;
    for (int k = 1; k < n; ++k) {
      Val c;
      c.set = true;
      c.cont = true;
      regs_[slot + k] = c;
    }
    return absl::OkStatus();
  }

  // The value starting at register `reg`; an unset one reads as a marker.
  Val Read(uint32_t reg) const {
    const int slot = SlotOf(reg);
    if (slot < 0) return Marker("<bad register>");
    return ReadSlot(slot);
  }
  Val ReadSlot(int slot) const {
    if (slot < 0 || slot >= 16 || !regs_[slot].set) return Marker("<unset register>");
    if (regs_[slot].cont) return Marker("<middle of a register value>");
    return regs_[slot];
  }
  static Val Marker(const std::string& text) {
    Val v;
    v.set = true;
    v.text = text;
    v.len = 4;
    return v;
  }

  // `len` bytes from register `reg` on, as concatenated components.
  std::vector<Val> Concat(uint32_t reg, uint32_t len) const {
    std::vector<Val> out;
    int slot = SlotOf(reg);
    uint32_t consumed = 0;
    while (consumed < len && out.size() < 16) {
      Val v = ReadSlot(slot);
      out.push_back(v);
      const uint32_t n = std::max<uint32_t>(1, (v.len + 3) / 4);
      consumed += n * 4;
      slot += static_cast<int>(n);
    }
    if (consumed != len) out.push_back(Marker(absl::StrCat("<key of ", consumed, " bytes for ", len, ">")));
    return out;
  }

  // A key or data of `types` read from register `reg`, as nft prints it.
  std::string Typed(uint32_t reg, const std::vector<uint32_t>& types, uint32_t len, bool key) const {
    std::vector<Val> parts = Concat(reg, len);
    std::vector<std::string> texts;
    for (size_t i = 0; i < parts.size(); ++i) {
      const Val& v = parts[i];
      std::string t = v.text;
      const uint32_t want = i < types.size() ? types[i] : 0;
      const bool type_ok = (want == 7 && v.type == VType::kIpv4) || (want == 8 && v.type == VType::kIpv6) ||
                           (want == 12 && v.type == VType::kInetProto) ||
                           (want == 13 && v.type == VType::kInetService) || (want == 19 && v.type == VType::kMark);
      if (!type_ok) {
        t = absl::StrCat("<", t, " where ", want ? TypeName(want) ? TypeName(want) : "?" : "nothing", " is>");
      }
      // A mark keyed in network order (the backends maps) must be converted.
      if (key && want == 19 && !v.hton) t = "<host-order " + t + ">";
      texts.push_back(t);
    }
    return absl::StrJoin(texts, " . ");
  }

  // A network header load: consumes the pending `meta nfproto` dependency.
  void NetworkFamily(int fam, std::string* text) {
    if (dep_fam_ == fam) {
      stmts_[dep_index_].clear();
      dep_fam_ = 0;
      established_ = fam;
    } else if (established_ != fam) {
      *text = "<no meta nfproto dependency> " + *text;
    }
  }

  absl::Status Payload(nftnl_expr* e) {
    if (nftnl_expr_is_set(e, NFTNL_EXPR_PAYLOAD_SREG)) return Stmt("<payload write>");
    const uint32_t base = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE);
    const uint32_t off = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET);
    const uint32_t len = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN);
    Val v;
    v.len = len;
    if (base == NFT_PAYLOAD_NETWORK_HEADER && len == 4 && (off == 12 || off == 16)) {
      v.text = off == 12 ? "ip saddr" : "ip daddr";
      v.type = VType::kIpv4;
      NetworkFamily(NFPROTO_IPV4, &v.text);
    } else if (base == NFT_PAYLOAD_NETWORK_HEADER && len == 16 && (off == 8 || off == 24)) {
      v.text = off == 8 ? "ip6 saddr" : "ip6 daddr";
      v.type = VType::kIpv6;
      NetworkFamily(NFPROTO_IPV6, &v.text);
    } else if (base == NFT_PAYLOAD_TRANSPORT_HEADER && len == 2 && (off == 0 || off == 2)) {
      v.text = off == 0 ? "th sport" : "th dport";
      v.type = VType::kInetService;
    } else {
      v.text = absl::StrCat("@", base, ",", off * 8, ",", len * 8);
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_DREG), v);
  }

  absl::Status Meta(nftnl_expr* e) {
    const uint32_t key = nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY);
    if (nftnl_expr_is_set(e, NFTNL_EXPR_META_SREG)) {
      const Val v = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_META_SREG));
      if (key != NFT_META_MARK) return Stmt(absl::StrCat("meta <key ", key, "> set ", v.text));
      if (v.len != 4) return Stmt(absl::StrCat("meta mark set <", v.len, " bytes: ", v.text, ">"));
      return Stmt("meta mark set " + (v.is_const ? Const(VType::kMark, v.bytes) : v.text));
    }
    Val v;
    switch (key) {
      case NFT_META_L4PROTO: v.text = "meta l4proto", v.len = 1, v.type = VType::kInetProto; break;
      case NFT_META_MARK: v.text = "meta mark", v.len = 4, v.type = VType::kMark; break;
      case NFT_META_NFPROTO: v.text = "meta nfproto", v.len = 1, v.type = VType::kNfproto; break;
      default: v.text = absl::StrCat("meta <key ", key, ">"), v.len = 4; break;
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_META_DREG), v);
  }

  absl::Status Ct(nftnl_expr* e) {
    const uint32_t key = nftnl_expr_get_u32(e, NFTNL_EXPR_CT_KEY);
    if (nftnl_expr_is_set(e, NFTNL_EXPR_CT_SREG)) {
      const Val v = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_CT_SREG));
      if (key == NFT_CT_MARK) {
        if (v.len != 4) return Stmt(absl::StrCat("ct mark set <", v.len, " bytes: ", v.text, ">"));
        return Stmt("ct mark set " + (v.is_const ? Const(VType::kMark, v.bytes) : v.text));
      }
      if (key == NFT_CT_LABELS && v.is_const && v.bytes.size() == 16) return Stmt("ct label set " + LabelBits(v.bytes));
      return Stmt(absl::StrCat("ct <key ", key, "> set ", v.text));
    }
    Val v;
    const bool has_dir = nftnl_expr_is_set(e, NFTNL_EXPR_CT_DIR);
    const uint8_t dir = has_dir ? nftnl_expr_get_u8(e, NFTNL_EXPR_CT_DIR) : 0;
    switch (key) {
      case NFT_CT_STATUS: v.text = "ct status", v.len = 4, v.type = VType::kCtStatus; break;
      case NFT_CT_LABELS: v.text = "ct label", v.len = 16, v.type = VType::kCtLabel; break;
      case NFT_CT_MARK: v.text = "ct mark", v.len = 4, v.type = VType::kMark; break;
      case NFT_CT_DST_IP:
      case NFT_CT_DST_IP6: {
        const bool v4 = key == NFT_CT_DST_IP;
        v.text = absl::StrCat("ct ", !has_dir ? "<no direction>" : dir == IP_CT_DIR_ORIGINAL ? "original" : "reply",
                              v4 ? " ip daddr" : " ip6 daddr");
        v.len = v4 ? 4 : 16;
        v.type = v4 ? VType::kIpv4 : VType::kIpv6;
        break;
      }
      default: v.text = absl::StrCat("ct <key ", key, ">"), v.len = 4; break;
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_CT_DREG), v);
  }

  static std::string LabelBits(const std::string& b) {
    std::vector<std::string> bits;
    for (size_t i = 0; i < b.size() * 8; ++i) {
      if (static_cast<uint8_t>(b[i / 8]) & (1u << (i % 8))) bits.push_back(std::to_string(i));
    }
    return bits.empty() ? "<no label>" : absl::StrJoin(bits, ",");
  }

  static const char* CtStatusBit(uint32_t bits) {
    switch (bits) {
      case IPS_EXPECTED: return "expected";
      case IPS_SEEN_REPLY: return "seen-reply";
      case IPS_ASSURED: return "assured";
      case IPS_CONFIRMED: return "confirmed";
      case IPS_SRC_NAT: return "snat";
      case IPS_DST_NAT: return "dnat";
      case IPS_DYING: return "dying";
    }
    return nullptr;
  }

  // The prefix length when `mask` (in the value's own byte order) is one.
  static int PrefixLen(const Val& v) {
    std::string m = v.mask;
    if (v.type == VType::kMark && m.size() == 4) {  // host order: compare as a number
      const uint32_t x = HostU32(m);
      int n = 0;
      while (n < 32 && (x & (0x80000000u >> n))) ++n;
      return n < 32 && (x << n) != 0 ? -1 : n;
    }
    int n = 0;
    size_t i = 0;
    for (; i < m.size() && static_cast<uint8_t>(m[i]) == 0xff; ++i) n += 8;
    if (i < m.size()) {
      uint8_t b = static_cast<uint8_t>(m[i]);
      while (b & 0x80) {
        ++n;
        b = static_cast<uint8_t>(b << 1);
      }
      if (b != 0) return -1;
      for (++i; i < m.size(); ++i) {
        if (m[i] != 0) return -1;
      }
    }
    return n;
  }

  absl::Status Cmp(nftnl_expr* e) {
    const Val v = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_SREG));
    const uint32_t op = nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP);
    uint32_t dlen = 0;
    const void* d = nftnl_expr_get(e, NFTNL_EXPR_CMP_DATA, &dlen);
    const std::string data(static_cast<const char*>(d), dlen);
    if (dlen != v.len) return Stmt(absl::StrCat("<compare ", dlen, " bytes with ", v.len, ": ", v.text, ">"));
    const char* ops[] = {"==", "!=", "<", "<=", ">", ">="};
    const std::string opname = op < 6 ? ops[op] : "<op>";
    if (v.type == VType::kNfproto && !v.masked && op == NFT_CMP_EQ) {
      // A dependency nft does not print when an ip/ip6 match follows.
      dep_index_ = stmts_.size();
      dep_fam_ = static_cast<uint8_t>(data[0]);
      return Stmt("meta nfproto " + Const(v.type, data));
    }
    if (v.masked) {
      const bool zero = std::all_of(data.begin(), data.end(), [](char c) { return c == 0; });
      if (v.type == VType::kCtStatus && op == NFT_CMP_NEQ && zero && CtStatusBit(HostU32(v.mask))) {
        return Stmt(absl::StrCat(v.text, " ", CtStatusBit(HostU32(v.mask))));
      }
      if (v.type == VType::kCtLabel && op == NFT_CMP_NEQ && zero && LabelBits(v.mask).find(',') == std::string::npos) {
        return Stmt(absl::StrCat(v.text, " ", LabelBits(v.mask)));
      }
      const int plen = PrefixLen(v);
      if (plen >= 0 && (op == NFT_CMP_EQ || op == NFT_CMP_NEQ)) {
        return Stmt(absl::StrCat(v.text, op == NFT_CMP_EQ ? " " : " != ", Const(v.type, data), "/", plen));
      }
      return Stmt(absl::StrCat(v.text, " & ", Const(v.type, v.mask), " ", opname, " ", Const(v.type, data)));
    }
    return Stmt(absl::StrCat(v.text, op == NFT_CMP_EQ ? " " : " " + opname + " ", Const(v.type, data)));
  }

  absl::Status Bitwise(nftnl_expr* e) {
    Val v = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_SREG));
    const uint32_t len = nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_LEN);
    uint32_t mlen = 0, xlen = 0;
    const void* m = nftnl_expr_get(e, NFTNL_EXPR_BITWISE_MASK, &mlen);
    const void* x = nftnl_expr_get(e, NFTNL_EXPR_BITWISE_XOR, &xlen);
    const std::string xs = x ? std::string(static_cast<const char*>(x), xlen) : std::string();
    if (m == nullptr || mlen != len || len != v.len || v.masked ||
        !std::all_of(xs.begin(), xs.end(), [](char c) { return c == 0; })) {
      v.text = "<bitwise on " + v.text + ">";
    } else {
      v.masked = true;
      v.mask.assign(static_cast<const char*>(m), mlen);
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_BITWISE_DREG), v);
  }

  absl::Status Byteorder(nftnl_expr* e) {
    Val v = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_SREG));
    if (nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_OP) != NFT_BYTEORDER_HTON ||
        nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_LEN) != v.len ||
        nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_SIZE) != 4 || v.type != VType::kMark || v.hton) {
      v.text = "<byteorder of " + v.text + ">";
    } else {
      v.hton = true;
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_BYTEORDER_DREG), v);
  }

  absl::Status Immediate(nftnl_expr* e) {
    const uint32_t dreg = nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_DREG);
    if (dreg == NFT_REG_VERDICT) {
      const uint32_t code = nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT);
      const char* chain = nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN) ? nftnl_expr_get_str(e, NFTNL_EXPR_IMM_CHAIN) : nullptr;
      return Verdict(static_cast<int32_t>(code), chain);
    }
    uint32_t len = 0;
    const void* d = nftnl_expr_get(e, NFTNL_EXPR_IMM_DATA, &len);
    Val v;
    v.is_const = true;
    v.bytes.assign(static_cast<const char*>(d), len);
    v.len = len;
    v.text = Hex(v.bytes);
    return Write(dreg, v);
  }

  absl::Status Verdict(int32_t code, const char* chain) {
    switch (code) {
      case NF_ACCEPT: return Stmt("accept");
      case NF_DROP: return Stmt("drop");
      case NFT_RETURN: return Stmt("return");
      case NFT_CONTINUE: return Stmt("continue");
      case NFT_JUMP:
      case NFT_GOTO: {
        if (chain == nullptr) return Stmt("<jump without a chain>");
        if (!Chain(chain)) return Refuse(ENOENT, absl::StrCat("no chain ", chain));
        targets_.push_back(chain);
        return Stmt(absl::StrCat(code == NFT_JUMP ? "jump " : "goto ", chain));
      }
    }
    return Stmt(absl::StrCat("<verdict ", code, ">"));
  }

  bool Chain(const std::string& name) const {
    auto it = table_.chains.find(name);
    return it != table_.chains.end();
  }

  absl::StatusOr<const SetState*> Set(const char* name) const {
    auto it = table_.sets.find(name ? name : "");
    if (it == table_.sets.end()) return Refuse(ENOENT, absl::StrCat("no set ", name ? name : "(none)"));
    return &it->second;
  }

  // A named counter, or one looked up in an object map (nft_objref.c: the
  // map form when a source register and a set are given, else the
  // immediate one when a name and a type are).
  absl::Status Objref(nftnl_expr* e) {
    if (next_objref_ >= objref_names_.size()) return Stmt("<objref without its attributes>");
    const ObjrefName& names = objref_names_[next_objref_++];
    const bool map_form = nftnl_expr_is_set(e, NFTNL_EXPR_OBJREF_SET_SREG) &&
                          (names.set || nftnl_expr_is_set(e, NFTNL_EXPR_OBJREF_SET_ID));
    if (map_form) {
      if (!names.set) return Stmt("<objref through a map named by its id>");
      const std::string& map = *names.set;
      auto it = table_.sets.find(map);
      if (it == table_.sets.end()) return Refuse(ENOENT, absl::StrCat("no set ", map));
      const SetState& s = it->second;
      if (!(s.flags & NFT_SET_OBJECT)) {
        return Refuse(EINVAL, absl::StrCat("objref through ", map, ", not an object map"));
      }
      if (s.obj_type != NFT_OBJECT_COUNTER) {
        return Refuse(EOPNOTSUPP, absl::StrCat("objref through ", map, ", a map of objects of type ", s.obj_type));
      }
      const std::string key = Typed(nftnl_expr_get_u32(e, NFTNL_EXPR_OBJREF_SET_SREG), SplitType(s.key_type), s.key_len,
                                    /*key=*/true);
      return Stmt(absl::StrCat("counter name ", key, " map @", map));
    }
    if (!names.imm || !nftnl_expr_is_set(e, NFTNL_EXPR_OBJREF_IMM_TYPE)) {
      return Refuse(EOPNOTSUPP, "objref of neither form");
    }
    const std::string& name = *names.imm;
    if (nftnl_expr_get_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE) != NFT_OBJECT_COUNTER) return Stmt("<objref of a non-counter>");
    if (!table_.counters.count(name)) return Refuse(ENOENT, absl::StrCat("no counter ", name));
    counters_.push_back(name);
    return Stmt(absl::StrCat("counter name \"", name, "\""));
  }

  absl::Status Lookup(nftnl_expr* e) {
    const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
    absl::StatusOr<const SetState*> set = Set(name);
    if (!set.ok()) return set.status();
    const SetState& s = **set;
    const uint32_t sreg = nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SREG);
    const std::string key = Typed(sreg, SplitType(s.key_type), s.key_len, /*key=*/true);
    const bool inv = nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_FLAGS) &&
                     (nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS) & NFT_LOOKUP_F_INV);
    if (!nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG)) {
      return Stmt(absl::StrCat(key, inv ? " != @" : " @", name));
    }
    const uint32_t dreg = nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_DREG);
    if (!(s.flags & NFT_SET_MAP)) return Refuse(EINVAL, absl::StrCat("lookup with a result in set ", name));
    if (dreg == NFT_REG_VERDICT) {
      if (s.data_type != NFT_DATA_VERDICT) return Refuse(EINVAL, absl::StrCat("vmap on the data map ", name));
      return Stmt(absl::StrCat(key, " vmap @", name));
    }
    if (s.data_type == NFT_DATA_VERDICT) return Refuse(EINVAL, absl::StrCat("data from the verdict map ", name));
    Val v;
    v.text = absl::StrCat(key, " map @", name);
    v.len = s.data_len;
    v.data_types = SplitType(s.data_type);
    if (v.data_types.size() == 1) v.type = static_cast<VType>(v.data_types[0]);
    return Write(dreg, v);
  }

  absl::Status Fib(nftnl_expr* e) {
    const uint32_t flags = nftnl_expr_get_u32(e, NFTNL_EXPR_FIB_FLAGS);
    const uint32_t result = nftnl_expr_get_u32(e, NFTNL_EXPR_FIB_RESULT);
    Val v;
    v.len = 4;
    if (result == NFT_FIB_RESULT_ADDRTYPE && (flags == NFTA_FIB_F_SADDR || flags == NFTA_FIB_F_DADDR)) {
      v.text = flags == NFTA_FIB_F_SADDR ? "fib saddr type" : "fib daddr type";
      v.type = VType::kFibAddr;
    } else {
      v.text = absl::StrCat("<fib flags ", flags, " result ", result, ">");
    }
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_FIB_DREG), v);
  }

  absl::Status Numgen(nftnl_expr* e) {
    const uint32_t type = nftnl_expr_get_u32(e, NFTNL_EXPR_NG_TYPE);
    const uint32_t mod = nftnl_expr_get_u32(e, NFTNL_EXPR_NG_MODULUS);
    const uint32_t off = nftnl_expr_is_set(e, NFTNL_EXPR_NG_OFFSET) ? nftnl_expr_get_u32(e, NFTNL_EXPR_NG_OFFSET) : 0;
    Val v;
    v.len = 4;
    v.type = VType::kInteger;
    v.text = absl::StrCat("numgen ", type == NFT_NG_RANDOM ? "random" : type == NFT_NG_INCREMENTAL ? "inc" : "<type>",
                          " mod ", mod);
    if (mod == 0) v.text = "<numgen mod 0>";
    if (off != 0) absl::StrAppend(&v.text, " offset ", off);
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_NG_DREG), v);
  }

  absl::Status Hash(nftnl_expr* e) {
    const Val src = Read(nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_SREG));
    const uint32_t len = nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_LEN);
    const uint32_t mod = nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_MODULUS);
    const uint32_t off = nftnl_expr_is_set(e, NFTNL_EXPR_HASH_OFFSET) ? nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_OFFSET) : 0;
    Val v;
    v.len = 4;
    v.type = VType::kInteger;
    if (nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_TYPE) != NFT_HASH_JENKINS || len != src.len || mod == 0) {
      v.text = "<hash of " + src.text + ">";
    } else {
      v.text = absl::StrCat("jhash ", src.text, " mod ", mod);
    }
    if (nftnl_expr_is_set(e, NFTNL_EXPR_HASH_SEED)) {
      absl::StrAppend(&v.text, absl::StrFormat(" seed 0x%x", nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_SEED)));
    }
    if (off != 0) absl::StrAppend(&v.text, " offset ", off);
    return Write(nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_DREG), v);
  }

  // nft's duration: 1d2h3m4s5ms.
  static std::string Duration(uint64_t ms) {
    std::string out;
    const uint64_t d = ms / 86400000, h = ms / 3600000 % 24, m = ms / 60000 % 60, s = ms / 1000 % 60, r = ms % 1000;
    if (d) absl::StrAppend(&out, d, "d");
    if (h) absl::StrAppend(&out, h, "h");
    if (m) absl::StrAppend(&out, m, "m");
    if (s) absl::StrAppend(&out, s, "s");
    if (r) absl::StrAppend(&out, r, "ms");
    return out.empty() ? "0s" : out;
  }

  absl::Status Dynset(nftnl_expr* e) {
    const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_DYNSET_SET_NAME);
    absl::StatusOr<const SetState*> set = Set(name);
    if (!set.ok()) return set.status();
    const SetState& s = **set;
    if (!(s.flags & NFT_SET_EVAL)) return Refuse(EOPNOTSUPP, absl::StrCat("dynset into set ", name, " without flag dynamic"));
    const uint64_t timeout = nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_TIMEOUT)
                                 ? nftnl_expr_get_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT)
                                 : 0;
    if (timeout != 0 && !(s.flags & NFT_SET_TIMEOUT)) {
      return Refuse(EINVAL, absl::StrCat("dynset timeout into set ", name, " without timeouts"));
    }
    const uint32_t op = nftnl_expr_get_u32(e, NFTNL_EXPR_DYNSET_OP);
    std::string out = absl::StrCat(op == NFT_DYNSET_OP_UPDATE ? "update" : op == NFT_DYNSET_OP_ADD ? "add" : "<op>",
                                   " @", name, " { ",
                                   Typed(nftnl_expr_get_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY), SplitType(s.key_type),
                                         s.key_len, /*key=*/false));
    if (timeout != 0) absl::StrAppend(&out, " timeout ", Duration(timeout));
    if (nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_SREG_DATA)) {
      if (!(s.flags & NFT_SET_MAP) || s.data_type == NFT_DATA_VERDICT) return Refuse(EINVAL, "dynset data into a non-map");
      absl::StrAppend(&out, " : ",
                      Typed(nftnl_expr_get_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA), SplitType(s.data_type), s.data_len,
                            /*key=*/false));
    } else if (s.flags & NFT_SET_MAP) {
      return Refuse(EINVAL, absl::StrCat("dynset without data into the map ", name));
    }
    return Stmt(out + " }");
  }

  absl::Status Nat(nftnl_expr* e) {
    const uint32_t type = nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_TYPE);
    const uint32_t fam = nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FAMILY);
    const uint32_t flags = nftnl_expr_is_set(e, NFTNL_EXPR_NAT_FLAGS) ? nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FLAGS) : 0;
    const uint32_t alen = fam == NFPROTO_IPV4 ? 4 : fam == NFPROTO_IPV6 ? 16 : 0;
    std::string out = absl::StrCat(type == NFT_NAT_DNAT ? "dnat " : type == NFT_NAT_SNAT ? "snat " : "<nat> ",
                                   fam == NFPROTO_IPV4 ? "ip" : fam == NFPROTO_IPV6 ? "ip6" : "<family>", " to ");
    if (!nftnl_expr_is_set(e, NFTNL_EXPR_NAT_REG_ADDR_MIN)) return Stmt(out + "<no address>");
    const uint32_t amin = nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN);
    const uint32_t amax = nftnl_expr_is_set(e, NFTNL_EXPR_NAT_REG_ADDR_MAX) ? nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX) : amin;
    const bool has_proto = nftnl_expr_is_set(e, NFTNL_EXPR_NAT_REG_PROTO_MIN);
    const uint32_t pmin = has_proto ? nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN) : 0;
    const uint32_t pmax = nftnl_expr_is_set(e, NFTNL_EXPR_NAT_REG_PROTO_MAX) ? nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MAX) : pmin;
    if (amin != amax || pmin != pmax) return Stmt(out + "<address or port range>");
    const Val a = Read(amin);
    const bool map_ips = flags & NF_NAT_RANGE_MAP_IPS;
    const bool proto_specified = flags & NF_NAT_RANGE_PROTO_SPECIFIED;
    if (!map_ips || (has_proto != proto_specified)) absl::StrAppend(&out, absl::StrFormat("<flags 0x%x> ", flags));
    // One map lookup giving address . port: nft prints the map.
    if (!a.data_types.empty() && has_proto && a.len == alen + 4 && SlotOf(pmin) == SlotOf(amin) + static_cast<int>(alen / 4)) {
      const bool types_ok = a.data_types.size() == 2 && a.data_types[0] == (alen == 4 ? 7u : 8u) && a.data_types[1] == 13;
      return Stmt(out + (types_ok ? a.text : "<map of other types: " + a.text + ">"));
    }
    std::string addr = a.text;
    if (a.len != alen) addr = "<" + addr + " is not an address of the family>";
    if (has_proto) return Stmt(absl::StrCat(out, addr, ":", Read(pmin).text));
    return Stmt(out + addr);
  }

  absl::Status Reject(nftnl_expr* e) {
    const uint32_t type = nftnl_expr_get_u32(e, NFTNL_EXPR_REJECT_TYPE);
    const uint8_t code = nftnl_expr_get_u8(e, NFTNL_EXPR_REJECT_CODE);
    if (type == NFT_REJECT_ICMPX_UNREACH && code == NFT_REJECT_ICMPX_PORT_UNREACH) return Stmt("reject");
    return Stmt(absl::StrCat("reject <type ", type, " code ", code, ">"));
  }

  const Table& table_;
  std::array<Val, 16> regs_;
  std::vector<std::string> stmts_;
  std::vector<std::string> targets_;
  std::vector<std::string> counters_;
  const std::vector<ObjrefName> objref_names_;
  size_t next_objref_ = 0;
  size_t dep_index_ = 0;
  int dep_fam_ = 0;
  int established_ = 0;
};

// ---- elements ----------------------------------------------------------------

// One key or datum of `types` from its bytes; "" if the length is wrong.
std::string Value(const std::vector<uint32_t>& types, const std::string& b, bool mark_network_order) {
  std::vector<std::string> parts;
  size_t at = 0;
  for (uint32_t id : types) {
    const size_t len = TypeLen(id);
    if (at + len > b.size()) return "<short value " + Hex(b) + ">";
    const std::string p = b.substr(at, len);
    at += len;
    switch (id) {
      case 7:
      case 8: parts.push_back(Addr(p)); break;
      case 12:
        parts.push_back(p.substr(1) == std::string(3, '\0') ? ProtoName(static_cast<uint8_t>(p[0])) : "<proto " + Hex(p) + ">");
        break;
      case 13:
        parts.push_back(p.substr(2) == std::string(2, '\0') ? Const(VType::kInetService, p.substr(0, 2))
                                                             : "<port " + Hex(p) + ">");
        break;
      case 19:
        parts.push_back(absl::StrFormat("0x%08x", mark_network_order ? BeU32(p) : HostU32(p)));
        break;
      default: parts.push_back("<" + Hex(p) + ">"); break;
    }
  }
  if (at != b.size()) return "<long value " + Hex(b) + ">";
  return absl::StrJoin(parts, " . ");
}

// `b` minus one, as a big-endian number.
std::string Decrement(std::string b) {
  for (int i = static_cast<int>(b.size()) - 1; i >= 0; --i) {
    if (b[i]-- != 0) break;
  }
  return b;
}

// A range [first, last] as nft prints it: a value, a prefix, or first-last.
std::string Range(uint32_t type, const std::string& first, const std::string& last, bool mark_network_order) {
  const std::vector<uint32_t> t = {type};
  if (first == last) return Value(t, first, mark_network_order);
  // A prefix: equal up to some bit, then all zeros in `first` and all ones
  // in `last`.
  const size_t bits = first.size() * 8;
  auto bit = [](const std::string& b, size_t i) { return (static_cast<uint8_t>(b[i / 8]) >> (7 - i % 8)) & 1; };
  size_t plen = 0;
  while (plen < bits && bit(first, plen) == bit(last, plen)) ++plen;
  bool prefix = last.size() == first.size();
  for (size_t i = plen; i < bits && prefix; ++i) prefix = !bit(first, i) && bit(last, i);
  if (prefix) return absl::StrCat(Value(t, first, mark_network_order), "/", plen);
  return absl::StrCat(Value(t, first, mark_network_order), "-", Value(t, last, mark_network_order));
}

std::string DataText(const SetState& s, const SetState::Data& d, bool mark_network_order) {
  if (s.flags & NFT_SET_OBJECT) return "\"" + d.objref + "\"";
  if (d.verdict) {
    switch (static_cast<int32_t>(d.code)) {
      case NFT_GOTO: return "goto " + d.chain;
      case NFT_JUMP: return "jump " + d.chain;
      case NF_DROP: return "drop";
      case NF_ACCEPT: return "accept";
      case NFT_RETURN: return "return";
    }
    return absl::StrCat("<verdict ", d.code, ">");
  }
  return Value(SplitType(s.data_type), d.bytes, mark_network_order);
}

// A set's elements as nft lists them; an interval set's start and end
// elements paired up (an error when they do not pair: overlapping or
// broken intervals).
absl::StatusOr<std::vector<std::string>> Elements(const std::string& name, const SetState& s) {
  std::vector<std::string> out;
  const bool map = s.flags & (NFT_SET_MAP | NFT_SET_OBJECT);  // an object map prints its objects as data
  // The backends maps key a host-order mark in network order (the rule
  // converts the packet's mark before the lookup); nft prints the ticket.
  const bool mark_network_order = true;
  if (!(s.flags & NFT_SET_INTERVAL)) {
    for (const auto& [k, d] : s.elems) {
      std::string e = Value(SplitType(s.key_type), k.first, mark_network_order);
      if (map) e += " : " + DataText(s, d, mark_network_order);
      out.push_back(e);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  const std::vector<uint32_t> types = SplitType(s.key_type);
  if (types.size() != 1) return Refuse(EINVAL, absl::StrCat("set ", name, ": an interval set with a concatenated key"));
  // Sorted by key, an end before a start of the same key.
  std::vector<std::pair<std::string, bool>> keys;
  for (const auto& [k, d] : s.elems) keys.push_back(k);
  std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return a.second > b.second;  // end (true) first
  });
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& [key, end] = keys[i];
    if (end) {
      return Refuse(ENOTEMPTY, absl::StrCat("set ", name, ": an interval end ", Hex(key), " without its start"));
    }
    std::string last;
    if (i + 1 < keys.size() && keys[i + 1].second) {
      last = Decrement(keys[i + 1].first);
      ++i;
    } else if (i + 1 == keys.size()) {
      last = std::string(key.size(), '\xff');  // open: up to the last value
    } else {
      return Refuse(ENOTEMPTY, absl::StrCat("set ", name, ": overlapping intervals at ", Hex(key), " and ",
                                            Hex(keys[i + 1].first)));
    }
    std::string e = Range(types[0], key, last, mark_network_order);
    if (map) e += " : " + DataText(s, s.elems.at({key, false}), mark_network_order);
    out.push_back(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- chains ------------------------------------------------------------------

const char* HookName(uint32_t h) {
  switch (h) {
    case NF_INET_PRE_ROUTING: return "prerouting";
    case NF_INET_LOCAL_IN: return "input";
    case NF_INET_FORWARD: return "forward";
    case NF_INET_LOCAL_OUT: return "output";
    case NF_INET_POST_ROUTING: return "postrouting";
  }
  return "<hook>";
}

// The priority as nft names it: the nearest standard priority valid at the
// hook, within 10, as "name", "name + n" or "name - n"; else the number.
std::string Priority(uint32_t hook, int32_t prio) {
  struct Std {
    const char* name;
    int value;
    int only_hook;  // -1: any
  };
  static const Std kStd[] = {{"raw", -300, -1},    {"mangle", -150, -1}, {"dstnat", -100, NF_INET_PRE_ROUTING},
                             {"filter", 0, -1},    {"security", 50, -1}, {"srcnat", 100, NF_INET_POST_ROUTING}};
  const Std* best = nullptr;
  for (const Std& s : kStd) {
    if (s.only_hook >= 0 && static_cast<uint32_t>(s.only_hook) != hook) continue;
    const int d = std::abs(prio - s.value);
    if (d <= 10 && (best == nullptr || d < std::abs(prio - best->value))) best = &s;
  }
  if (best == nullptr) return std::to_string(prio);
  const int off = prio - best->value;
  if (off == 0) return best->name;
  return absl::StrCat(best->name, off > 0 ? " + " : " - ", std::abs(off));
}

std::string HookLine(const ChainState& c) {
  if (!c.base) return "";
  return absl::StrCat("type ", c.type, " hook ", HookName(c.hooknum), " priority ", Priority(c.hooknum, c.prio),
                      "; policy ", c.policy == NF_ACCEPT ? "accept" : c.policy == NF_DROP ? "drop" : "<policy>", ";");
}

// ---- the batch ---------------------------------------------------------------

std::string TableComment(const nftnl_table* t) {
  uint32_t len = 0;
  const void* udata = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
  if (udata == nullptr) return "";
  std::string out;
  nftnl_udata_parse(
      udata, len,
      [](const nftnl_udata* attr, void* data) {
        if (nftnl_udata_type(attr) == NFTNL_UDATA_TABLE_COMMENT) {
          const char* v = static_cast<const char*>(nftnl_udata_get(attr));
          *static_cast<std::string*>(data) = std::string(v, strnlen(v, nftnl_udata_len(attr)));
        }
        return 0;
      },
      &out);
  return out;
}

template <typename T, typename D>
std::unique_ptr<T, D> Own(T* p, D free) {
  return std::unique_ptr<T, D>(p, free);
}

std::string AttrString(const nlattr* a) {
  const char* p = static_cast<const char*>(mnl_attr_get_payload(a));
  return std::string(p, strnlen(p, mnl_attr_get_payload_len(a)));
}

// References to chain `name` from rules of other chains and from elements.
bool Referenced(const Table& t, const std::string& name) {
  for (const auto& [cname, c] : t.chains) {
    if (cname == name) continue;
    for (const RuleState& r : c.rules) {
      if (std::find(r.targets.begin(), r.targets.end(), name) != r.targets.end()) return true;
    }
  }
  for (const auto& [sname, s] : t.sets) {
    for (const auto& [k, d] : s.elems) {
      if (d.verdict && d.chain == name) return true;
    }
  }
  return false;
}

absl::Status ApplyMessage(const nlmsghdr* nlh, std::unique_ptr<Table>* table) {
  const uint16_t msg = nlh->nlmsg_type & 0xff;
  const uint16_t flags = nlh->nlmsg_flags;
  auto need_table = [&](const char* name) -> absl::Status {
    if (*table == nullptr || name == nullptr || (*table)->name != name) {
      return Refuse(ENOENT, absl::StrCat("no table ", name ? name : "(none)"));
    }
    return absl::OkStatus();
  };
  switch (msg) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: {
      auto t = Own(nftnl_table_alloc(), &nftnl_table_free);
      if (nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return Refuse(EINVAL, "table message does not parse");
      const char* name = nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME);
      if (name == nullptr) return Refuse(EINVAL, "table without a name");
      if (msg == NFT_MSG_DELTABLE) {
        if (auto s = need_table(name); !s.ok()) return s;
        table->reset();
        return absl::OkStatus();
      }
      if (*table != nullptr) {
        if ((*table)->name != name) return Refuse(EOPNOTSUPP, "a second table (this model holds one)");
        if (flags & NLM_F_EXCL) return Refuse(EEXIST, absl::StrCat("table ", name, " exists"));
        return absl::OkStatus();  // an update; the comment stays
      }
      *table = std::make_unique<Table>();
      (*table)->name = name;
      (*table)->comment = TableComment(t.get());
      return absl::OkStatus();
    }
    case NFT_MSG_NEWSET: {
      auto s = Own(nftnl_set_alloc(), &nftnl_set_free);
      if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return Refuse(EINVAL, "set message does not parse");
      if (auto st = need_table(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE)); !st.ok()) return st;
      const std::string name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
      SetState set;
      set.flags = nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS);
      set.key_type = nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_TYPE);
      set.key_len = nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_LEN);
      if (nftnl_set_is_set(s.get(), NFTNL_SET_DATA_TYPE)) set.data_type = nftnl_set_get_u32(s.get(), NFTNL_SET_DATA_TYPE);
      if (nftnl_set_is_set(s.get(), NFTNL_SET_DATA_LEN)) set.data_len = nftnl_set_get_u32(s.get(), NFTNL_SET_DATA_LEN);
      if (nftnl_set_is_set(s.get(), NFTNL_SET_DESC_SIZE)) set.size = nftnl_set_get_u32(s.get(), NFTNL_SET_DESC_SIZE);
      // As nf_tables_newset: a map of data or of objects, not both, and
      // objects only in a set the packet path does not update.
      if ((set.flags & (NFT_SET_MAP | NFT_SET_OBJECT)) == (NFT_SET_MAP | NFT_SET_OBJECT)) {
        return Refuse(EOPNOTSUPP, absl::StrCat("set ", name, ": flags map and object"));
      }
      if ((set.flags & (NFT_SET_EVAL | NFT_SET_OBJECT)) == (NFT_SET_EVAL | NFT_SET_OBJECT)) {
        return Refuse(EOPNOTSUPP, absl::StrCat("set ", name, ": flags dynamic and object"));
      }
      if (nftnl_set_is_set(s.get(), NFTNL_SET_DATA_TYPE) && !(set.flags & NFT_SET_MAP)) {
        return Refuse(EINVAL, absl::StrCat("set ", name, ": a data type without flag map"));
      }
      if (nftnl_set_is_set(s.get(), NFTNL_SET_OBJ_TYPE)) {
        if (!(set.flags & NFT_SET_OBJECT)) {
          return Refuse(EINVAL, absl::StrCat("set ", name, ": an object type without flag object"));
        }
        set.obj_type = nftnl_set_get_u32(s.get(), NFTNL_SET_OBJ_TYPE);
        if (set.obj_type == NFT_OBJECT_UNSPEC || set.obj_type > NFT_OBJECT_MAX) {
          return Refuse(EOPNOTSUPP, absl::StrCat("set ", name, ": object type ", set.obj_type));
        }
        // The kernel takes any object type; this model holds counters only.
        if (set.obj_type != NFT_OBJECT_COUNTER) {
          return Refuse(EOPNOTSUPP, absl::StrCat("set ", name, ": a map of objects of type ", set.obj_type,
                                                 " (this model holds counters only)"));
        }
      } else if (set.flags & NFT_SET_OBJECT) {
        return Refuse(EINVAL, absl::StrCat("set ", name, ": flag object without an object type"));
      }
      uint32_t ulen = 0;
      if (const void* u = nftnl_set_get_data(s.get(), NFTNL_SET_USERDATA, &ulen)) set.udata.assign(static_cast<const char*>(u), ulen);
      if (set.key_len == 0 || set.key_len > 64) return Refuse(EINVAL, absl::StrCat("set ", name, ": key length ", set.key_len));
      uint32_t want_len = 0;
      for (uint32_t id : SplitType(set.key_type)) want_len += TypeLen(id);
      if (want_len != set.key_len) {
        return Refuse(EINVAL, absl::StrCat("set ", name, ": key type ", TypeText(set.key_type), " is ", want_len,
                                           " bytes, the key length ", set.key_len));
      }
      if ((set.flags & NFT_SET_MAP) && set.data_type != NFT_DATA_VERDICT) {
        uint32_t dlen = 0;
        for (uint32_t id : SplitType(set.data_type)) dlen += TypeLen(id);
        if (set.data_len == 0 || set.data_len > 64 || dlen != set.data_len) {
          return Refuse(EINVAL, absl::StrCat("set ", name, ": data length ", set.data_len));
        }
      }
      if (name.empty() || name.size() > 255) return Refuse(ENAMETOOLONG, "set name");
      auto it = (*table)->sets.find(name);
      if (it != (*table)->sets.end()) {
        if (flags & NLM_F_EXCL) return Refuse(EEXIST, "set " + name);
        if (!it->second.Same(set)) return Refuse(EEXIST, "set " + name + " exists with other properties");
        return absl::OkStatus();
      }
      (*table)->sets.emplace(name, std::move(set));
      return absl::OkStatus();
    }
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: {
      auto c = Own(nftnl_chain_alloc(), &nftnl_chain_free);
      if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return Refuse(EINVAL, "chain message does not parse");
      if (auto st = need_table(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)); !st.ok()) return st;
      const char* cname = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
      if (cname == nullptr) return Refuse(EINVAL, "chain without a name");
      const std::string name = cname;
      auto& chains = (*table)->chains;
      if (msg == NFT_MSG_DELCHAIN) {
        auto it = chains.find(name);
        if (it == chains.end()) return Refuse(ENOENT, "no chain " + name);
        if (Referenced(**table, name)) return Refuse(EBUSY, "chain " + name + " is still referenced");
        chains.erase(it);
        return absl::OkStatus();
      }
      if (name.size() > 255) return Refuse(ENAMETOOLONG, "chain name " + name);
      ChainState chain;
      if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM)) {
        chain.base = true;
        chain.hooknum = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM);
        chain.prio = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
        const char* type = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE);
        chain.type = type ? type : "filter";
        if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_POLICY)) chain.policy = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY);
      }
      auto it = chains.find(name);
      if (it != chains.end()) {
        if (flags & NLM_F_EXCL) return Refuse(EEXIST, "chain " + name);
        if (it->second.base != chain.base) return Refuse(EOPNOTSUPP, "chain " + name + " changes its kind");
        return absl::OkStatus();
      }
      chains.emplace(name, std::move(chain));
      return absl::OkStatus();
    }
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: {
      auto r = Own(nftnl_rule_alloc(), &nftnl_rule_free);
      if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return Refuse(EINVAL, "rule message does not parse");
      if (auto st = need_table(nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE)); !st.ok()) return st;
      const char* cname = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
      auto it = (*table)->chains.find(cname ? cname : "");
      if (it == (*table)->chains.end()) return Refuse(ENOENT, absl::StrCat("no chain ", cname ? cname : "(none)"));
      if (msg == NFT_MSG_DELRULE) {
        if (nftnl_rule_is_set(r.get(), NFTNL_RULE_HANDLE)) return Refuse(EOPNOTSUPP, "deleting one rule by handle");
        it->second.rules.clear();  // a flush
        return absl::OkStatus();
      }
      if (!(flags & NLM_F_APPEND) && !it->second.rules.empty()) return Refuse(EOPNOTSUPP, "a rule inserted first");
      RuleDecoder d(**table, ObjrefNames(nlh));
      absl::Status st;
      auto iter = Own(nftnl_expr_iter_create(r.get()), &nftnl_expr_iter_destroy);
      for (nftnl_expr* e = nftnl_expr_iter_next(iter.get()); e != nullptr && st.ok(); e = nftnl_expr_iter_next(iter.get())) {
        st = d.Expr(e);
      }
      if (!st.ok()) return absl::FailedPreconditionError(absl::StrCat("rule in chain ", cname, ": ", st.message()));
      RuleState rule = d.Finish();
      for (const std::string& target : rule.targets) {
        if ((*table)->chains.at(target).base) return Refuse(EOPNOTSUPP, "goto or jump to the base chain " + target);
      }
      it->second.rules.push_back(std::move(rule));
      return absl::OkStatus();
    }
    case NFT_MSG_NEWOBJ:
    case NFT_MSG_DELOBJ: {
      auto o = Own(nftnl_obj_alloc(), &nftnl_obj_free);
      if (nftnl_obj_nlmsg_parse(nlh, o.get()) < 0) return Refuse(EINVAL, "object message does not parse");
      if (auto st = need_table(nftnl_obj_get_str(o.get(), NFTNL_OBJ_TABLE)); !st.ok()) return st;
      const char* oname = nftnl_obj_get_str(o.get(), NFTNL_OBJ_NAME);
      if (oname == nullptr) return Refuse(EINVAL, "object without a name");
      if (nftnl_obj_get_u32(o.get(), NFTNL_OBJ_TYPE) != NFT_OBJECT_COUNTER) {
        return Refuse(EOPNOTSUPP, absl::StrCat("object ", oname, " is not a counter"));
      }
      const std::string name = oname;
      auto& counters = (*table)->counters;
      if (msg == NFT_MSG_DELOBJ) {
        if (!counters.count(name)) return Refuse(ENOENT, "no counter " + name);
        for (const auto& [cname, c] : (*table)->chains) {
          for (const RuleState& r : c.rules) {
            if (std::find(r.counters.begin(), r.counters.end(), name) != r.counters.end()) {
              return Refuse(EBUSY, "counter " + name + " is still used by chain " + cname);
            }
          }
        }
        for (const auto& [sname, s] : (*table)->sets) {
          for (const auto& [k, d] : s.elems) {
            if (d.objref == name) return Refuse(EBUSY, "counter " + name + " is still named by an element of " + sname);
          }
        }
        counters.erase(name);
        return absl::OkStatus();
      }
      if (name.size() > 255) return Refuse(ENAMETOOLONG, "counter name " + name);
      if (!counters.insert(name).second && (flags & NLM_F_EXCL)) return Refuse(EEXIST, "counter " + name);
      return absl::OkStatus();
    }
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: {
      // Parsed here: libnftnl 1.2.4's nftnl_set_elems_nlmsg_parse refuses
      // the messages it builds itself when they hold more than one element
      // (it numbers the nested elements 1, 2, ... and wants each to be
      // NFTA_LIST_ELEM; the kernel ignores their type).
      std::string tname, sname;
      const nlattr* list = nullptr;
      for (const nlattr* a : dp::NetlinkAttrs(nlh, sizeof(nfgenmsg))) {
        switch (mnl_attr_get_type(a)) {
          case NFTA_SET_ELEM_LIST_TABLE: tname = AttrString(a); break;
          case NFTA_SET_ELEM_LIST_SET: sname = AttrString(a); break;
          case NFTA_SET_ELEM_LIST_ELEMENTS: list = a; break;
        }
      }
      if (auto st = need_table(tname.c_str()); !st.ok()) return st;
      auto sit = (*table)->sets.find(sname);
      if (sit == (*table)->sets.end()) return Refuse(ENOENT, "no set " + sname);
      if (list == nullptr) return absl::OkStatus();
      SetState& set = sit->second;
      const bool map = set.flags & NFT_SET_MAP;
      for (const nlattr* el : dp::NestedAttrs(list)) {
        std::string key_bytes;
        bool has_key = false, end = false, has_data = false, has_verdict = false, has_objref = false;
        SetState::Data d;
        for (const nlattr* f : dp::NestedAttrs(el)) {
          switch (mnl_attr_get_type(f)) {
            case NFTA_SET_ELEM_KEY:
              for (const nlattr* v : dp::NestedAttrs(f)) {
                if (mnl_attr_get_type(v) == NFTA_DATA_VALUE) {
                  key_bytes.assign(static_cast<const char*>(mnl_attr_get_payload(v)), mnl_attr_get_payload_len(v));
                  has_key = true;
                }
              }
              break;
            case NFTA_SET_ELEM_FLAGS:
              end = mnl_attr_get_payload_len(f) == 4 && (ntohl(mnl_attr_get_u32(f)) & NFT_SET_ELEM_INTERVAL_END);
              break;
            case NFTA_SET_ELEM_DATA:
              for (const nlattr* v : dp::NestedAttrs(f)) {
                if (mnl_attr_get_type(v) == NFTA_DATA_VALUE) {
                  d.bytes.assign(static_cast<const char*>(mnl_attr_get_payload(v)), mnl_attr_get_payload_len(v));
                  has_data = true;
                } else if (mnl_attr_get_type(v) == NFTA_DATA_VERDICT) {
                  has_verdict = true;
                  for (const nlattr* x : dp::NestedAttrs(v)) {
                    if (mnl_attr_get_type(x) == NFTA_VERDICT_CODE) d.code = ntohl(mnl_attr_get_u32(x));
                    if (mnl_attr_get_type(x) == NFTA_VERDICT_CHAIN) d.chain = AttrString(x);
                  }
                }
              }
              break;
            case NFTA_SET_ELEM_OBJREF:
              has_objref = true;
              d.objref = AttrString(f);
              break;
            default:
              return Refuse(EOPNOTSUPP, absl::StrCat("set ", sname, ": element attribute ", mnl_attr_get_type(f)));
          }
        }
        if (!has_key || key_bytes.size() != set.key_len) {
          return Refuse(EINVAL, absl::StrCat("set ", sname, ": a key of ", key_bytes.size(), " bytes, not ", set.key_len));
        }
        if (end && !(set.flags & NFT_SET_INTERVAL)) {
          return Refuse(EINVAL, absl::StrCat("set ", sname, ": an interval end in a set without intervals"));
        }
        const std::pair<std::string, bool> key{key_bytes, end};
        if (msg == NFT_MSG_DELSETELEM) {
          if (set.elems.erase(key) == 0) {
            return Refuse(ENOENT, absl::StrCat("set ", sname, ": no element ", Hex(key.first), end ? " (end)" : ""));
          }
          continue;
        }
        // As nft_add_set_elem: an object map's start element names an object
        // (of the map's type, in the table), its end element nothing; no
        // other set's element names one.
        if (set.flags & NFT_SET_OBJECT) {
          if (!has_objref && !end) {
            return Refuse(EINVAL, absl::StrCat("set ", sname, ": an element without its object"));
          }
        } else if (has_objref) {
          return Refuse(EINVAL, absl::StrCat("set ", sname, ": an object on an element of a set without objects"));
        }
        if (end && has_objref) return Refuse(EINVAL, absl::StrCat("set ", sname, ": an object on an interval end"));
        if (has_objref && !(*table)->counters.count(d.objref)) {
          return Refuse(ENOENT, absl::StrCat("set ", sname, ": no counter ", d.objref));
        }
        if (!map || end) {
          if (has_verdict || has_data) return Refuse(EINVAL, absl::StrCat("set ", sname, ": data on a key-only element"));
        } else if (set.data_type == NFT_DATA_VERDICT) {
          if (!has_verdict) return Refuse(EINVAL, absl::StrCat("set ", sname, ": an element without its verdict"));
          d.verdict = true;
          if (static_cast<int32_t>(d.code) == NFT_GOTO || static_cast<int32_t>(d.code) == NFT_JUMP) {
            auto cit = (*table)->chains.find(d.chain);
            if (cit == (*table)->chains.end()) return Refuse(ENOENT, absl::StrCat("set ", sname, ": goto missing chain ", d.chain));
            if (cit->second.base) return Refuse(EOPNOTSUPP, absl::StrCat("set ", sname, ": goto base chain ", d.chain));
          }
        } else if (!has_data || d.bytes.size() != set.data_len) {
          return Refuse(EINVAL, absl::StrCat("set ", sname, ": data of ", d.bytes.size(), " bytes, not ", set.data_len));
        }
        if (set.elems.count(key)) {
          if (flags & NLM_F_EXCL) {
            return Refuse(EEXIST, absl::StrCat("set ", sname, ": element ", Hex(key.first), end ? " (end)" : "", " exists"));
          }
          continue;
        }
        set.elems.emplace(key, std::move(d));
      }
      return absl::OkStatus();
    }
  }
  return Refuse(EOPNOTSUPP, absl::StrCat("message type ", msg));
}

}  // namespace

NftKernel::NftKernel() = default;
NftKernel::~NftKernel() = default;

bool NftKernel::has_table() const { return table_ != nullptr; }

absl::Status NftKernel::Apply(absl::string_view batch) {
  std::unique_ptr<Table> work = table_ ? std::make_unique<Table>(*table_) : nullptr;
  // The buffer is copied so that every message is aligned.
  std::vector<uint32_t> buf((batch.size() + 3) / 4);
  memcpy(buf.data(), batch.data(), batch.size());
  const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(buf.data());
  int len = static_cast<int>(batch.size());
  int index = 0;
  bool begun = false, ended = false;
  for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len), ++index) {
    if (ended) return Refuse(EINVAL, absl::StrCat("message ", index, " after the batch's END"));
    if (nlh->nlmsg_type == NFNL_MSG_BATCH_BEGIN) {
      if (begun) return Refuse(EINVAL, "a second BEGIN");
      begun = true;
      continue;
    }
    if (!begun) return Refuse(EINVAL, "a message before BEGIN");
    if (nlh->nlmsg_type == NFNL_MSG_BATCH_END) {
      ended = true;
      continue;
    }
    if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) return Refuse(EINVAL, "a message of another subsystem");
    const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    if (gen->nfgen_family != NFPROTO_INET) return Refuse(EAFNOSUPPORT, "a message for another family than inet");
    if (absl::Status s = ApplyMessage(nlh, &work); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("message ", index, " (type ", nlh->nlmsg_type & 0xff, ", seq ", nlh->nlmsg_seq, "): ", s.message()));
    }
  }
  if (len != 0) return Refuse(EINVAL, absl::StrCat(len, " bytes after the last message"));
  if (!begun || !ended) return Refuse(EINVAL, "a batch without BEGIN and END");
  // Interval sets must pair up (the kernel refuses overlaps as they come).
  if (work != nullptr) {
    for (const auto& [name, set] : work->sets) {
      if (auto e = Elements(name, set); !e.ok()) return e.status();
    }
  }
  table_ = std::move(work);
  ++batches_;
  return absl::OkStatus();
}

std::optional<TableListing> NftKernel::Listing() const {
  if (table_ == nullptr) return std::nullopt;
  TableListing out;
  out.name = table_->name;
  out.comment = table_->comment;
  out.counters = table_->counters;
  for (const auto& [name, s] : table_->sets) {
    SetListing& l = out.sets[name];
    l.map = s.flags & (NFT_SET_MAP | NFT_SET_OBJECT);
    std::string type = "type " + TypeText(s.key_type);
    if (s.flags & NFT_SET_OBJECT) {
      const std::string objects =
          s.obj_type == NFT_OBJECT_COUNTER ? "counter" : absl::StrCat("<objects of type ", s.obj_type, ">");
      absl::StrAppend(&type, " : ", objects);
    } else if (l.map) {
      absl::StrAppend(&type, " : ", s.data_type == NFT_DATA_VERDICT ? "verdict" : TypeText(s.data_type));
    }
    l.header.push_back(type);
    if (s.size) l.header.push_back(absl::StrCat("size ", s.size));
    std::vector<std::string> flags;
    if (s.flags & NFT_SET_CONSTANT) flags.push_back("constant");
    if (s.flags & NFT_SET_EVAL) flags.push_back("dynamic");
    if (s.flags & NFT_SET_INTERVAL) flags.push_back("interval");
    if (s.flags & NFT_SET_TIMEOUT) flags.push_back("timeout");
    if (!flags.empty()) l.header.push_back("flags " + absl::StrJoin(flags, ","));
    absl::StatusOr<std::vector<std::string>> elems = Elements(name, s);
    l.elements = elems.ok() ? *elems : std::vector<std::string>{std::string(elems.status().message())};
  }
  for (const auto& [name, c] : table_->chains) {
    ChainListing& l = out.chains[name];
    l.hook = HookLine(c);
    for (const RuleState& r : c.rules) l.rules.push_back(r.text);
  }
  return out;
}

// ---- render.cc's text -----------------------------------------------------------

absl::StatusOr<TableListing> ParseListing(absl::string_view text) {
  TableListing out;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  enum { kTop, kTable, kSet, kChain, kCounter } where = kTop;
  SetListing* set = nullptr;
  ChainListing* chain = nullptr;
  bool in_elements = false;
  auto bad = [&](absl::string_view line) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected line in the rendered text: \"", line, "\""));
  };
  for (absl::string_view line : lines) {
    switch (where) {
      case kTop:
        if (line.empty()) continue;
        if (!absl::ConsumePrefix(&line, "table inet ") || !absl::ConsumeSuffix(&line, " {")) return bad(line);
        out.name = std::string(line);
        where = kTable;
        continue;
      case kTable: {
        if (line.empty()) continue;
        if (line == "}") {
          where = kTop;
          continue;
        }
        absl::string_view rest = line;
        if (absl::ConsumePrefix(&rest, "\tcomment \"") && absl::ConsumeSuffix(&rest, "\"")) {
          out.comment = std::string(rest);
          continue;
        }
        const bool is_set = absl::ConsumePrefix(&rest, "\tset ");
        const bool is_map = !is_set && absl::ConsumePrefix(&rest, "\tmap ");
        if ((is_set || is_map) && absl::ConsumeSuffix(&rest, " {")) {
          set = &out.sets[std::string(rest)];
          set->map = is_map;
          where = kSet;
          in_elements = false;
          continue;
        }
        if (absl::ConsumePrefix(&rest, "\tcounter ") && absl::ConsumeSuffix(&rest, " {")) {
          out.counters.insert(std::string(rest));
          where = kCounter;
          continue;
        }
        if (absl::ConsumePrefix(&rest, "\tchain ") && absl::ConsumeSuffix(&rest, " {")) {
          chain = &out.chains[std::string(rest)];
          where = kChain;
          continue;
        }
        return bad(line);
      }
      case kSet: {
        if (line == "\t}") {
          where = kTable;
          std::sort(set->elements.begin(), set->elements.end());
          continue;
        }
        absl::string_view rest = line;
        if (in_elements) {
          rest = absl::StripLeadingAsciiWhitespace(rest);
        } else if (absl::ConsumePrefix(&rest, "\t\telements = { ")) {
          in_elements = true;
        } else if (absl::ConsumePrefix(&rest, "\t\t")) {
          set->header.push_back(std::string(rest));
          continue;
        } else {
          return bad(line);
        }
        if (absl::ConsumeSuffix(&rest, " }")) in_elements = false;
        for (absl::string_view e : absl::StrSplit(rest, ", ")) {
          absl::ConsumeSuffix(&e, ",");
          if (!e.empty()) set->elements.push_back(std::string(e));
        }
        continue;
      }
      case kCounter:
        if (line == "\t}") {
          where = kTable;
          continue;
        }
        if (line != "\t\tpackets 0 bytes 0") return bad(line);
        continue;
      case kChain: {
        if (line == "\t}") {
          where = kTable;
          continue;
        }
        absl::string_view rest = line;
        if (!absl::ConsumePrefix(&rest, "\t\t")) return bad(line);
        if (chain->rules.empty() && chain->hook.empty() && absl::StartsWith(rest, "type ") &&
            absl::StrContains(rest, " hook ")) {
          chain->hook = std::string(rest);
          continue;
        }
        chain->rules.push_back(std::string(rest));
        continue;
      }
    }
  }
  if (where != kTop) return absl::InvalidArgumentError("the rendered text ends inside an object");
  return out;
}

std::string Difference(const TableListing& want, const TableListing& got) {
  std::string out;
  int n = 0;
  auto add = [&](const std::string& line) {
    if (n++ < 12) absl::StrAppend(&out, line, "\n");
  };
  if (want.name != got.name) add(absl::StrCat("table: \"", want.name, "\" vs \"", got.name, "\""));
  if (want.comment != got.comment) add(absl::StrCat("comment: \"", want.comment, "\" vs \"", got.comment, "\""));
  for (const auto& [name, s] : want.sets) {
    auto it = got.sets.find(name);
    if (it == got.sets.end()) {
      add("set " + name + ": missing");
      continue;
    }
    if (s.map != it->second.map) add("set " + name + ": map vs set");
    if (s.header != it->second.header) {
      add(absl::StrCat("set ", name, ": {", absl::StrJoin(s.header, "; "), "} vs {",
                       absl::StrJoin(it->second.header, "; "), "}"));
    }
    std::vector<std::string> missing, extra;
    std::set_difference(s.elements.begin(), s.elements.end(), it->second.elements.begin(), it->second.elements.end(),
                        std::back_inserter(missing));
    std::set_difference(it->second.elements.begin(), it->second.elements.end(), s.elements.begin(), s.elements.end(),
                        std::back_inserter(extra));
    for (size_t i = 0; i < missing.size() && i < 4; ++i) add("set " + name + ": missing element " + missing[i]);
    for (size_t i = 0; i < extra.size() && i < 4; ++i) add("set " + name + ": extra element " + extra[i]);
    if (s.elements.size() != it->second.elements.size() && missing.empty() && extra.empty()) {
      add(absl::StrCat("set ", name, ": ", s.elements.size(), " vs ", it->second.elements.size(), " elements"));
    }
  }
  for (const auto& [name, s] : got.sets) {
    if (!want.sets.count(name)) add("set " + name + ": extra");
  }
  for (const std::string& name : want.counters) {
    if (!got.counters.count(name)) add("counter " + name + ": missing");
  }
  for (const std::string& name : got.counters) {
    if (!want.counters.count(name)) add("counter " + name + ": extra");
  }
  for (const auto& [name, c] : want.chains) {
    auto it = got.chains.find(name);
    if (it == got.chains.end()) {
      add("chain " + name + ": missing");
      continue;
    }
    if (c.hook != it->second.hook) add("chain " + name + ": hook \"" + c.hook + "\" vs \"" + it->second.hook + "\"");
    const size_t rules = std::max(c.rules.size(), it->second.rules.size());
    for (size_t i = 0; i < rules; ++i) {
      const std::string a = i < c.rules.size() ? c.rules[i] : "(none)";
      const std::string b = i < it->second.rules.size() ? it->second.rules[i] : "(none)";
      if (a != b) add(absl::StrCat("chain ", name, " rule ", i, ":\n    \"", a, "\"\n vs \"", b, "\""));
    }
  }
  for (const auto& [name, c] : got.chains) {
    if (!want.chains.count(name)) add("chain " + name + ": extra");
  }
  if (n > 12) absl::StrAppend(&out, "... and ", n - 12, " more\n");
  return out;
}

}  // namespace nftproxy::fuzz
