#include "dataplane/nft_expr.h"

#include <arpa/inet.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>

namespace nftproxy::dp {
namespace {

constexpr uint32_t kRtnLocal = 2;  // RTN_LOCAL

uint32_t AddrLen(Family f) { return f == Family::kV4 ? 4 : 16; }

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
  const uint8_t zero[16] = {};
  nftnl_expr* e = Add(r, "bitwise");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
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

void Lookup(nftnl_rule* r, const char* set, uint32_t sreg, int dreg = -1) {
  nftnl_expr* e = Add(r, "lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
  if (dreg >= 0) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, static_cast<uint32_t>(dreg));
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
}

// The mark into register 1 in network order: it is host order, and the
// keys of the maps it looks up are big endian.
void MarkToBigEndian(nftnl_rule* r) {
  Meta(r, NFT_META_MARK, NFT_REG_1);
  nftnl_expr* e = Add(r, "byteorder");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_LEN, 4);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BYTEORDER_SIZE, 4);
}

void Fib(nftnl_rule* r, uint32_t flags) {
  nftnl_expr* e = Add(r, "fib");
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, flags);
  CmpU32(r, NFT_REG_1, NFT_CMP_EQ, kRtnLocal);
}

// The dependency nft adds before an ip/ip6 header match in an inet table.
void MatchNfproto(nftnl_rule* r, Family fam) {
  Meta(r, NFT_META_NFPROTO, NFT_REG_1);
  const uint8_t proto = fam == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  Cmp(r, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
}

void LoadAddr(nftnl_rule* r, Family f, bool source, uint32_t dreg) {
  const uint32_t offset = f == Family::kV4 ? (source ? 12 : 16) : (source ? 8 : 24);
  Payload(r, NFT_PAYLOAD_NETWORK_HEADER, offset, AddrLen(f), dreg);
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

// "ip saddr <prefix>" (or daddr): full load, mask when it is a real prefix,
// compare.
void MatchSourcePrefix(nftnl_rule* r, const Cidr& c, bool source = true) {
  const Family f = c.addr.family;
  MatchNfproto(r, f);
  LoadAddr(r, f, source, NFT_REG_1);
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

void Label(uint32_t bit, uint8_t out[16]) {
  memset(out, 0, 16);
  out[bit / 8] = static_cast<uint8_t>(1u << (bit % 8));
}

void EncodeStmt(nftnl_rule* r, const Stmt& s) {
  const Family f = s.family;
  switch (s.kind) {
    case StmtKind::kFibSaddrLocal: return Fib(r, NFTA_FIB_F_SADDR);
    case StmtKind::kFibDaddrLocal: return Fib(r, NFTA_FIB_F_DADDR);
    case StmtKind::kSaddrInSet:
    case StmtKind::kDaddrInSet:
      MatchNfproto(r, f);
      LoadAddr(r, f, s.kind == StmtKind::kSaddrInSet, NFT_REG_1);
      return Lookup(r, s.name, NFT_REG_1);
    case StmtKind::kAddrPairInSet:
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_1);
      LoadAddr(r, f, false, f == Family::kV4 ? NFT_REG32_01 : NFT_REG_2);
      return Lookup(r, s.name, NFT_REG_1);
    case StmtKind::kSaddrPrefix: return MatchSourcePrefix(r, *s.cidr);
    case StmtKind::kDaddrNotLoopback:
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
      return;
    case StmtKind::kCtStatusDnat: {
      Ct(r, NFT_CT_STATUS, NFT_REG_1);
      const uint32_t dnat = IPS_DST_NAT;
      Bitwise(r, NFT_REG_1, &dnat, 4);
      return CmpU32(r, NFT_REG_1, NFT_CMP_NEQ, 0);
    }
    case StmtKind::kCtLabelTest: {
      Ct(r, NFT_CT_LABELS, NFT_REG_1);
      uint8_t label[16], zero[16] = {};
      Label(s.a, label);
      Bitwise(r, NFT_REG_1, label, 16);
      return Cmp(r, NFT_REG_1, NFT_CMP_NEQ, zero, 16);
    }
    case StmtKind::kCtOriginalDaddrInSet:
      Ct(r, f == Family::kV4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, NFT_REG_1, IP_CT_DIR_ORIGINAL);
      return Lookup(r, s.name, NFT_REG_1);
    case StmtKind::kMarkBitTest:
      Meta(r, NFT_META_MARK, NFT_REG_1);
      Bitwise(r, NFT_REG_1, &s.a, 4);
      return CmpU32(r, NFT_REG_1, NFT_CMP_EQ, s.a);
    case StmtKind::kL4ProtoIs:
      Meta(r, NFT_META_L4PROTO, NFT_REG_1);
      return Cmp(r, NFT_REG_1, NFT_CMP_EQ, &s.small, 1);
    case StmtKind::kDaddrPrefix: return MatchSourcePrefix(r, *s.cidr, false);
    case StmtKind::kDportIs: {
      Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG_1);
      const uint16_t port = htons(static_cast<uint16_t>(s.a));
      return Cmp(r, NFT_REG_1, NFT_CMP_EQ, &port, 2);
    }
    case StmtKind::kNftraceSet: {
      const uint8_t on = 1;
      Immediate(r, NFT_REG_1, &on, 1);
      return MetaSet(r, NFT_META_NFTRACE, NFT_REG_1);
    }
    case StmtKind::kFrontendVmap:
      MatchNfproto(r, f);
      LoadFrontendKey(r, f);
      return Lookup(r, s.name, NFT_REG_1, NFT_REG_VERDICT);
    case StmtKind::kNodePortVmap:
      Meta(r, NFT_META_L4PROTO, NFT_REG_1);
      Payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_01);
      return Lookup(r, s.name, NFT_REG_1, NFT_REG_VERDICT);
    case StmtKind::kSaveMark:
      Meta(r, NFT_META_MARK, NFT_REG_1);
      return CtSet(r, NFT_CT_MARK, NFT_REG_1);
    case StmtKind::kCounterRef: {
      nftnl_expr* e = Add(r, "objref");
      nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
      nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, s.name);
      return;
    }
    case StmtKind::kCtLabelSet: {
      uint8_t label[16];
      Label(s.a, label);
      Immediate(r, NFT_REG_1, label, sizeof(label));
      return CtSet(r, NFT_CT_LABELS, NFT_REG_1);
    }
    case StmtKind::kTicketNumgen: {
      nftnl_expr* e = Add(r, "numgen");
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, s.small ? NFT_NG_INCREMENTAL : NFT_NG_RANDOM);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, s.a);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, s.b);
      return MetaSet(r, NFT_META_MARK, NFT_REG_1);
    }
    case StmtKind::kTicketJhash: {
      MatchNfproto(r, f);
      LoadAddr(r, f, true, NFT_REG_2);
      nftnl_expr* e = Add(r, "hash");
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SREG, NFT_REG_2);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_DREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_LEN, AddrLen(f));
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_MODULUS, s.a);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_SEED, s.c);
      nftnl_expr_set_u32(e, NFTNL_EXPR_HASH_OFFSET, s.b);
      return MetaSet(r, NFT_META_MARK, NFT_REG_1);
    }
    case StmtKind::kTicketAffinity:
      LoadAffinityKey(r, f);
      Lookup(r, s.name, NFT_REG_1, NFT_REG_1);
      return MetaSet(r, NFT_META_MARK, NFT_REG_1);
    case StmtKind::kAffinityUpdate: {
      LoadAffinityKey(r, f);
      const uint32_t data_reg = f == Family::kV4 ? NFT_REG_2 : NFT_REG32_10;
      Meta(r, NFT_META_MARK, data_reg);
      nftnl_expr* e = Add(r, "dynset");
      nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA, data_reg);
      nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
      nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, uint64_t{s.a} * 1000);
      nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, s.name);
      return;
    }
    case StmtKind::kRestoreMark:
      Ct(r, NFT_CT_MARK, NFT_REG_1);
      return MetaSet(r, NFT_META_MARK, NFT_REG_1);
    case StmtKind::kCtMarkClear: {
      const uint32_t zero = 0;
      Immediate(r, NFT_REG_1, &zero, 4);
      return CtSet(r, NFT_CT_MARK, NFT_REG_1);
    }
    case StmtKind::kCounterMarkMap: {
      MarkToBigEndian(r);
      nftnl_expr* e = Add(r, "objref");
      nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_SET_SREG, NFT_REG_1);
      nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_SET_NAME, s.name);
      return;
    }
    case StmtKind::kDnatMarkMap: {
      MarkToBigEndian(r);
      Lookup(r, s.name, NFT_REG_1, NFT_REG_1);
      const uint32_t proto_reg = f == Family::kV4 ? NFT_REG32_01 : NFT_REG_2;
      nftnl_expr* n = Add(r, "nat");
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_FAMILY, f == Family::kV4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG_1);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_PROTO_MIN, proto_reg);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_reg);
      nftnl_expr_set_u32(n, NFTNL_EXPR_NAT_FLAGS, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
      return;
    }
    case StmtKind::kMasquerade: Add(r, "masq"); return;
    case StmtKind::kReject: {
      // In an inet table: ICMPX port unreachable (TCP clients see a refusal).
      nftnl_expr* e = Add(r, "reject");
      nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
      nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
      return;
    }
    case StmtKind::kGoto: return Verdict(r, NFT_GOTO, s.name);
    case StmtKind::kJump: return Verdict(r, NFT_JUMP, s.name);
    case StmtKind::kDrop: return Verdict(r, NF_DROP);
    case StmtKind::kReturn: return Verdict(r, NFT_RETURN);
  }
}

}  // namespace

void EncodeRule(nftnl_rule* r, const RuleStmts& rule) {
  for (const Stmt& s : rule) EncodeStmt(r, s);
}

}  // namespace nftproxy::dp
