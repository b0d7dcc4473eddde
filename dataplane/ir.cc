// The statement IR's text printer and the fixed objects as data.
#include "dataplane/ir.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace nftproxy::dp {

namespace {

const char* Ip(Family f) { return f == Family::kV4 ? "ip" : "ip6"; }

// nft's duration format: 3h, 1m30s, 2d4h.
std::string Duration(uint32_t s) {
  std::string out;
  const uint32_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d) absl::StrAppend(&out, d, "d");
  if (h) absl::StrAppend(&out, h, "h");
  if (m) absl::StrAppend(&out, m, "m");
  if (sec || out.empty()) absl::StrAppend(&out, sec, "s");
  return out;
}

std::string AffinityKey(Family f) {
  return absl::StrCat(Ip(f), " saddr . ", Ip(f), " daddr . meta l4proto . th dport");
}

void PrintStmt(const Stmt& s, std::string* out) {
  const Family f = s.family;
  switch (s.kind) {
    case StmtKind::kFibSaddrLocal: return absl::StrAppend(out, "fib saddr type local");
    case StmtKind::kFibDaddrLocal: return absl::StrAppend(out, "fib daddr type local");
    case StmtKind::kSaddrInSet: return absl::StrAppend(out, Ip(f), " saddr @", s.name);
    case StmtKind::kDaddrInSet: return absl::StrAppend(out, Ip(f), " daddr @", s.name);
    case StmtKind::kAddrPairInSet: return absl::StrAppend(out, Ip(f), " saddr . ", Ip(f), " daddr @", s.name);
    case StmtKind::kSaddrPrefix: {
      const Cidr& c = *s.cidr;
      const bool host = c.prefix_len == static_cast<int>(c.addr.size() * 8);
      return absl::StrAppend(out, Ip(f), " saddr ", host ? c.addr.ToString() : c.ToString());
    }
    case StmtKind::kDaddrNotLoopback:
      return absl::StrAppend(out, f == Family::kV4 ? "ip daddr != 127.0.0.0/8" : "ip6 daddr != ::1");
    case StmtKind::kCtStatusDnat: return absl::StrAppend(out, "ct status dnat");
    case StmtKind::kCtLabelTest: return absl::StrAppend(out, "ct label ", s.a);
    case StmtKind::kCtOriginalDaddrInSet: return absl::StrAppend(out, "ct original ", Ip(f), " daddr @", s.name);
    case StmtKind::kMarkBitTest:
      // nft prints a mask that is a prefix of the word as a prefix.
      if (s.a == 0x80000000u) return absl::StrAppend(out, "meta mark 0x80000000/1");
      return absl::StrAppend(out, absl::StrFormat("meta mark & 0x%08x == 0x%08x", s.a, s.a));
    case StmtKind::kL4ProtoIs:
      return absl::StrAppend(out, "meta l4proto ", L4ProtoName(static_cast<L4Proto>(s.small)));
    case StmtKind::kDaddrPrefix: {
      const Cidr& c = *s.cidr;
      const bool host = c.prefix_len == static_cast<int>(c.addr.size() * 8);
      return absl::StrAppend(out, Ip(f), " daddr ", host ? c.addr.ToString() : c.ToString());
    }
    case StmtKind::kDportIs: return absl::StrAppend(out, "th dport ", s.a);
    case StmtKind::kNftraceSet: return absl::StrAppend(out, "meta nftrace set 1");
    case StmtKind::kFrontendVmap:
      return absl::StrAppend(out, Ip(f), " daddr . meta l4proto . th dport vmap @", s.name);
    case StmtKind::kNodePortVmap: return absl::StrAppend(out, "meta l4proto . th dport vmap @", s.name);
    case StmtKind::kSaveMark: return absl::StrAppend(out, "ct mark set meta mark");
    case StmtKind::kCounterRef: return absl::StrAppend(out, "counter name \"", s.name, "\"");
    case StmtKind::kCounterMarkMap: return absl::StrAppend(out, "counter name meta mark map @", s.name);
    case StmtKind::kCtLabelSet: return absl::StrAppend(out, "ct label set ", s.a);
    case StmtKind::kTicketNumgen:
      return absl::StrAppend(out, "meta mark set numgen ", s.small ? "inc" : "random", " mod ", s.a, " offset ", s.b);
    case StmtKind::kTicketJhash:
      return absl::StrAppend(out, "meta mark set jhash ", Ip(f), " saddr mod ", s.a, " seed ",
                             absl::StrFormat("0x%x", s.c), " offset ", s.b);
    case StmtKind::kTicketAffinity:
      return absl::StrAppend(out, "meta mark set ", AffinityKey(f), " map @", s.name);
    case StmtKind::kAffinityUpdate:
      return absl::StrAppend(out, "update @", s.name, " { ", AffinityKey(f), " timeout ", Duration(s.a),
                             " : meta mark }");
    case StmtKind::kRestoreMark: return absl::StrAppend(out, "meta mark set ct mark");
    case StmtKind::kCtMarkClear: return absl::StrAppend(out, "ct mark set 0x00000000");
    case StmtKind::kDnatMarkMap: return absl::StrAppend(out, "dnat ", Ip(f), " to meta mark map @", s.name);
    case StmtKind::kMasquerade: return absl::StrAppend(out, "masquerade");
    case StmtKind::kReject: return absl::StrAppend(out, "reject");
    case StmtKind::kGoto: return absl::StrAppend(out, "goto ", s.name);
    case StmtKind::kJump: return absl::StrAppend(out, "jump ", s.name);
    case StmtKind::kDrop: return absl::StrAppend(out, "drop");
    case StmtKind::kReturn: return absl::StrAppend(out, "return");
  }
}

Stmt S(StmtKind kind, Family f = Family::kV4, const char* name = nullptr) {
  Stmt s;
  s.kind = kind;
  s.family = f;
  s.name = name;
  return s;
}

Stmt WithA(Stmt s, uint32_t a) {
  s.a = a;
  return s;
}

const char* SetOf(SetId id, Family f) { return SetName(id, f).c_str(); }

}  // namespace

void PrintRule(const RuleStmts& rule, std::string* out) {
  for (size_t i = 0; i < rule.size(); ++i) {
    if (i) out->push_back(' ');
    PrintStmt(rule[i], out);
  }
}

void LowerRule(const Rule& r, RuleStmts* out) {
  const Family f = r.family;
  switch (r.match) {
    case Rule::Match::kAny: break;
    case Rule::Match::kLocalSource: out->push_back(S(StmtKind::kFibSaddrLocal, f)); break;
    case Rule::Match::kClusterSource:
      out->push_back(S(StmtKind::kSaddrInSet, f, SetOf(SetId::kClusterCidrs, f)));
      break;
    case Rule::Match::kSourcePrefix: {
      Stmt s = S(StmtKind::kSaddrPrefix, f);
      s.cidr = &r.prefix;
      out->push_back(s);
      break;
    }
  }
  if (r.save_mark) out->push_back(S(StmtKind::kSaveMark, f));
  if (!r.counter.empty()) out->push_back(S(StmtKind::kCounterRef, f, r.counter.c_str()));
  if (r.masquerade) out->push_back(WithA(S(StmtKind::kCtLabelSet, f), kMasqueradeLabel));
  Stmt t = S(StmtKind::kTicketNumgen, f);
  t.a = r.modulus;
  t.b = r.offset;
  t.c = r.seed;
  switch (r.ticket) {
    case Rule::Ticket::kNone: break;
    case Rule::Ticket::kRandom: out->push_back(t); break;
    case Rule::Ticket::kRoundRobin:
      t.small = 1;
      out->push_back(t);
      break;
    case Rule::Ticket::kSourceHash:
      t.kind = StmtKind::kTicketJhash;
      out->push_back(t);
      break;
    case Rule::Ticket::kAffinity:
      out->push_back(S(StmtKind::kTicketAffinity, f, SetOf(SetId::kAffinity, f)));
      break;
  }
  if (r.affinity_timeout_s > 0) {
    out->push_back(WithA(S(StmtKind::kAffinityUpdate, f, SetOf(SetId::kAffinity, f)), r.affinity_timeout_s));
  }
  switch (r.verdict) {
    case Rule::Verdict::kNone: break;
    case Rule::Verdict::kGoto: out->push_back(S(StmtKind::kGoto, f, r.target.c_str())); break;
    case Rule::Verdict::kDrop: out->push_back(S(StmtKind::kDrop, f)); break;
  }
}

uint32_t DataTypeLen(DataType t) {
  switch (t) {
    case DataType::kIpv4: return 4;
    case DataType::kIpv6: return 16;
    default: return 4;  // proto, port and mark each take a 4-byte register
  }
}

uint32_t ConcatType(const DataType* types, size_t n) {
  uint32_t t = 0;
  for (size_t i = 0; i < n; ++i) t = (t << 6) | static_cast<uint32_t>(types[i]);
  return t;
}

uint32_t ConcatLen(const DataType* types, size_t n) {
  uint32_t len = 0;
  for (size_t i = 0; i < n; ++i) len += DataTypeLen(types[i]);
  return len;
}

std::string DataTypeText(const DataType* types, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const char* name = "?";
    switch (types[i]) {
      case DataType::kIpv4: name = "ipv4_addr"; break;
      case DataType::kIpv6: name = "ipv6_addr"; break;
      case DataType::kInetProto: name = "inet_proto"; break;
      case DataType::kInetService: name = "inet_service"; break;
      case DataType::kMark: name = "mark"; break;
      case DataType::kNone: break;
    }
    absl::StrAppend(&out, i ? " . " : "", name);
  }
  return out;
}

namespace {

DataType AddrType(Family f) { return f == Family::kV4 ? DataType::kIpv4 : DataType::kIpv6; }

SetDef FixedSet(SetId id, Family f, std::initializer_list<DataType> key) {
  SetDef d;
  d.id = id;
  d.family = f;
  d.name = SetName(id, f);
  d.key = key;
  return d;
}

RuleStmts R(std::initializer_list<Stmt> stmts) { return RuleStmts(stmts); }

ChainDef NewChainDef(std::string name) {
  ChainDef c;
  c.name = std::move(name);
  return c;
}

}  // namespace

FixedObjects Skeleton(const NodeSettings& node) {
  constexpr Family kFams[] = {Family::kV4, Family::kV6};
  const DataType proto = DataType::kInetProto, port = DataType::kInetService;
  FixedObjects out;
  // Created in the order `nft list` prints them (creation order).
  for (Family f : kFams) {
    SetDef d = FixedSet(SetId::kServiceIps, f, {AddrType(f), proto, port});
    d.map = d.verdict = true;
    out.sets.push_back(d);
  }
  for (Family f : kFams) {
    SetDef d = FixedSet(SetId::kNodePorts, f, {proto, port});
    d.map = d.verdict = true;
    out.sets.push_back(d);
  }
  for (SetId id : {SetId::kClusterIps, SetId::kClusterCidrs, SetId::kNodePortAddrs}) {
    for (Family f : kFams) {
      SetDef d = FixedSet(id, f, {AddrType(f)});
      d.interval = id != SetId::kClusterIps;
      out.sets.push_back(d);
    }
  }
  for (Family f : kFams) out.sets.push_back(FixedSet(SetId::kHairpin, f, {AddrType(f), AddrType(f)}));
  for (Family f : kFams) {
    SetDef d = FixedSet(SetId::kAffinity, f, {AddrType(f), AddrType(f), proto, port});
    d.map = true;
    d.data = {DataType::kMark};
    d.dynamic = true;
    d.size = 262144;
    out.sets.push_back(d);
  }

  ChainDef services = NewChainDef(kServicesChain);
  for (Family f : kFams) services.rules.push_back(R({S(StmtKind::kFrontendVmap, f, SetOf(SetId::kServiceIps, f))}));
  for (Family f : kFams) {
    services.rules.push_back(R({S(StmtKind::kDaddrInSet, f, SetOf(SetId::kClusterIps, f)), S(StmtKind::kReject)}));
  }
  for (Family f : kFams) {
    const Stmt vmap = S(StmtKind::kNodePortVmap, f, SetOf(SetId::kNodePorts, f));
    if (node.nodeport_cidrs.empty()) {
      services.rules.push_back(R({S(StmtKind::kFibDaddrLocal), S(StmtKind::kDaddrNotLoopback, f), vmap}));
    } else {
      services.rules.push_back(R({S(StmtKind::kDaddrInSet, f, SetOf(SetId::kNodePortAddrs, f)), vmap}));
    }
  }
  out.chains.push_back(std::move(services));
  out.chains.push_back(ChainDef{kPreroutingChain, Hook::kPrerouting, "nat", -100, "dstnat",
                                {R({S(StmtKind::kJump, Family::kV4, kServicesChain)})}});
  out.chains.push_back(ChainDef{kOutputChain, Hook::kOutput, "nat", -100, "-100",
                                {R({S(StmtKind::kJump, Family::kV4, kServicesChain)})}});
  out.chains.push_back(ChainDef{kPostroutingChain, Hook::kPostrouting, "nat", 100, "srcnat",
                                {R({S(StmtKind::kCtStatusDnat), S(StmtKind::kJump, Family::kV4, kMasqueradingChain)})}});
  ChainDef masq = NewChainDef(kMasqueradingChain);
  for (Family f : kFams) {
    masq.rules.push_back(R({S(StmtKind::kAddrPairInSet, f, SetOf(SetId::kHairpin, f)), S(StmtKind::kMasquerade)}));
  }
  // External traffic under policy CLUSTER is masqueraded whatever its
  // source, pods included (replies must come back through this node).
  masq.rules.push_back(R({WithA(S(StmtKind::kCtLabelTest), kMasqueradeLabel), S(StmtKind::kMasquerade)}));
  for (Family f : kFams) {
    masq.rules.push_back(R({S(StmtKind::kSaddrInSet, f, SetOf(SetId::kClusterCidrs, f)), S(StmtKind::kReturn)}));
  }
  if (!node.cluster_cidrs.empty()) {
    for (Family f : kFams) {
      masq.rules.push_back(
          R({S(StmtKind::kCtOriginalDaddrInSet, f, SetOf(SetId::kClusterIps, f)), S(StmtKind::kMasquerade)}));
    }
  }
  out.chains.push_back(std::move(masq));
  const RuleStmts restore =
      R({WithA(S(StmtKind::kMarkBitTest), kTicketBit), S(StmtKind::kRestoreMark), S(StmtKind::kCtMarkClear)});
  out.chains.push_back(ChainDef{kMarkRestoreChain, Hook::kPrerouting, "filter", -99, "dstnat + 1", {restore}});
  out.chains.push_back(ChainDef{kMarkRestoreOutputChain, Hook::kOutput, "route", -99, "-99", {restore}});
  return out;
}

FixedObjects ShardObjects(uint32_t shard, const NodeSettings& node) {
  FixedObjects out;
  // Interval maps keyed by the ticket (the mark, host order).
  auto ticket_map = [&](SetId id, Family f, std::string name) -> SetDef& {
    SetDef& d = out.sets.emplace_back();
    d.id = id;
    d.family = f;
    d.shard = shard;
    d.name = std::move(name);
    d.key = {DataType::kMark};
    d.interval = true;
    d.host_order_key = true;
    return d;
  };
  constexpr Family kFamilies[] = {Family::kV4, Family::kV6};
  for (Family f : kFamilies) {
    SetDef& d = ticket_map(SetId::kBackends, f, BackendsMapName(f, shard));
    d.map = true;
    d.data = {AddrType(f), DataType::kInetService};
  }
  if (node.endpoint_counters) {
    for (Family f : kFamilies) ticket_map(SetId::kEpConns, f, EpConnsMapName(f, shard)).counters = true;
  }
  // The sets are complete: their names may be pointed at from here on.
  for (size_t i = 0; i < 2; ++i) {
    const SetDef& map = out.sets[i];
    ChainDef pick = NewChainDef(PickChainName(map.family, shard));
    // Counts the new connection on its endpoint's counter: a rule of its
    // own, since a ticket without an interval (none) ends the rule.
    if (node.endpoint_counters) {
      pick.rules.push_back(R({S(StmtKind::kCounterMarkMap, map.family, out.sets[i + 2].name.c_str())}));
    }
    for (L4Proto p : {L4Proto::kTcp, L4Proto::kUdp, L4Proto::kSctp}) {
      Stmt is = S(StmtKind::kL4ProtoIs);
      is.small = static_cast<uint8_t>(p);
      pick.rules.push_back(R({is, S(StmtKind::kDnatMarkMap, map.family, map.name.c_str())}));
    }
    // LOCAL policy and no local endpoint: the local range has no element.
    pick.rules.push_back(R({WithA(S(StmtKind::kMarkBitTest), kLocalBit), S(StmtKind::kDrop)}));
    // No endpoint at all.
    pick.rules.push_back(R({S(StmtKind::kReject)}));
    out.chains.push_back(std::move(pick));
  }
  return out;
}

}  // namespace nftproxy::dp
