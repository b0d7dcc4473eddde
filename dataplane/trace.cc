#include "dataplane/trace.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <endian.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "dataplane/ir.h"
#include "dataplane/names.h"
#include "dataplane/nft_batch.h"
#include "dataplane/netlink_socket.h"

namespace nftproxy::dp {

std::string TraceTableName(const std::string& table) { return table + "-trace"; }

namespace {

// The one rule of each trace chain; `cidrs` holds the two /32 (/128)
// prefixes the statements point at.
RuleStmts TraceRule(const TraceFilter& f, const Cidr cidrs[2]) {
  RuleStmts r;
  const Family fam = f.src.family;
  Stmt s;
  s.family = fam;
  s.kind = StmtKind::kSaddrPrefix;
  s.cidr = &cidrs[0];
  r.push_back(s);
  s.kind = StmtKind::kDaddrPrefix;
  s.cidr = &cidrs[1];
  r.push_back(s);
  s.cidr = nullptr;
  s.kind = StmtKind::kL4ProtoIs;
  s.small = static_cast<uint8_t>(f.proto);
  r.push_back(s);
  s.kind = StmtKind::kDportIs;
  s.a = f.port;
  r.push_back(s);
  s.kind = StmtKind::kNftraceSet;
  r.push_back(s);
  return r;
}

void HostCidrs(const TraceFilter& f, Cidr out[2]) {
  out[0].addr = f.src;
  out[0].prefix_len = static_cast<int>(f.src.size() * 8);
  out[1].addr = f.dst;
  out[1].prefix_len = static_cast<int>(f.dst.size() * 8);
}

ChainDef TraceChain(const char* name, Hook hook) {
  ChainDef d;
  d.name = name;
  d.hook = hook;
  d.type = "filter";
  d.priority = kTracePriority;
  d.priority_text = "raw";
  return d;
}

absl::Status Send(Batch& b) {
  absl::StatusOr<std::unique_ptr<NetlinkSocket>> socket = OpenNetfilterSocket();
  if (!socket.ok()) return socket.status();
  std::vector<iovec> iov(nftnl_batch_iovec_len(b.raw()));
  nftnl_batch_iovec(b.raw(), iov.data(), static_cast<int>(iov.size()));
  const TicketOwner owner = [](uint32_t) { return std::string(); };
  return SendBatch(**socket, iov, [&](uint32_t seq, uint32_t bad) { return b.What(seq, bad, owner); });
}

}  // namespace

std::string TraceTableText(const std::string& table, const TraceFilter& f) {
  Cidr cidrs[2];
  HostCidrs(f, cidrs);
  std::string rule;
  PrintRule(TraceRule(f, cidrs), &rule);
  std::string out = absl::StrCat("table inet ", TraceTableName(table), " {\n\tcomment \"", kTableComment, "\"\n");
  for (const char* c : {kTracePreroutingChain, kTraceOutputChain}) {
    absl::StrAppend(&out, "\tchain ", c, " {\n\t\ttype filter hook ",
                    c == kTracePreroutingChain ? "prerouting" : "output", " priority raw; policy accept;\n\t\t", rule,
                    "\n\t}\n");
  }
  absl::StrAppend(&out, "}\n");
  return out;
}

absl::Status InstallTraceTable(const std::string& table, const TraceFilter& f) {
  if (f.src.family != f.dst.family) {
    return absl::InvalidArgumentError("the source and the destination must be of one address family");
  }
  Cidr cidrs[2];
  HostCidrs(f, cidrs);
  const RuleStmts rule = TraceRule(f, cidrs);
  uint32_t seq = 1;
  Batch b(TraceTableName(table), &seq);
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
  b.Table(NFT_MSG_DELTABLE, 0);
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, /*marked=*/true);
  const ChainDef chains[] = {TraceChain(kTracePreroutingChain, Hook::kPrerouting),
                             TraceChain(kTraceOutputChain, Hook::kOutput)};
  for (const ChainDef& c : chains) {
    b.NewChain(c.name, "", &c);
    b.Rule(c.name, "", rule);
  }
  b.End(&seq);
  return Send(b);
}

absl::Status RemoveTraceTable(const std::string& table) {
  uint32_t seq = 1;
  Batch b(TraceTableName(table), &seq);
  // Created first, so that deleting it cannot fail when it is not there.
  b.Table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
  b.Table(NFT_MSG_DELTABLE, 0);
  b.End(&seq);
  return Send(b);
}

std::optional<TraceAttrs> ParseTraceMessage(const nlmsghdr* nlh) {
  if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES || (nlh->nlmsg_type & 0xff) != NFT_MSG_TRACE) {
    return std::nullopt;
  }
  if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(nfgenmsg)) return std::nullopt;
  TraceAttrs t;
  t.family = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family;
  auto str = [](const nlattr* a) {
    const char* p = static_cast<const char*>(mnl_attr_get_payload(a));
    return std::string(p, strnlen(p, mnl_attr_get_payload_len(a)));
  };
  auto u32 = [](const nlattr* a) -> uint32_t {
    return mnl_attr_get_payload_len(a) >= 4 ? ntohl(mnl_attr_get_u32(a)) : 0;
  };
  for (const nlattr* a : NetlinkAttrs(nlh, sizeof(nfgenmsg))) {
    switch (mnl_attr_get_type(a)) {
      case NFTA_TRACE_TABLE: t.table = str(a); break;
      case NFTA_TRACE_CHAIN: t.chain = str(a); break;
      case NFTA_TRACE_ID:
        if (mnl_attr_get_payload_len(a) >= 4) t.id = mnl_attr_get_u32(a);  // opaque
        break;
      case NFTA_TRACE_TYPE: t.type = u32(a); break;
      case NFTA_TRACE_RULE_HANDLE:
        if (mnl_attr_get_payload_len(a) >= 8) t.rule_handle = be64toh(mnl_attr_get_u64(a));
        break;
      case NFTA_TRACE_VERDICT:
        for (const nlattr* v : NestedAttrs(a)) {
          if (mnl_attr_get_type(v) == NFTA_VERDICT_CODE) {
            t.has_verdict = true;
            t.verdict = static_cast<int32_t>(u32(v));
          } else if (mnl_attr_get_type(v) == NFTA_VERDICT_CHAIN) {
            t.verdict_chain = str(v);
          }
        }
        break;
      case NFTA_TRACE_POLICY: t.policy = u32(a); break;
      case NFTA_TRACE_MARK:
        t.has_mark = true;
        t.mark = u32(a);
        break;
      case NFTA_TRACE_NFPROTO: t.nfproto = u32(a); break;
      case NFTA_TRACE_NETWORK_HEADER:
        t.network_header.assign(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
        break;
      case NFTA_TRACE_TRANSPORT_HEADER:
        t.transport_header.assign(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
        break;
      default: break;
    }
  }
  return t;
}

namespace {

std::string ProtoName(uint8_t p) {
  switch (p) {
    case 6: return "tcp";
    case 17: return "udp";
    case 132: return "sctp";
    case 1: return "icmp";
    case 58: return "icmpv6";
    default: return absl::StrCat("proto ", p);
  }
}

// "tcp 198.18.1.2:40000 -> 198.19.0.10:80" from the headers; "" when the
// network header is too short to read.
std::string PacketText(const std::string& net, const std::string& th) {
  const auto* h = reinterpret_cast<const uint8_t*>(net.data());
  IpAddr src, dst;
  uint8_t proto = 0;
  if (net.size() >= 20 && (h[0] >> 4) == 4) {
    src.family = dst.family = Family::kV4;
    proto = h[9];
    memcpy(src.bytes.data(), h + 12, 4);
    memcpy(dst.bytes.data(), h + 16, 4);
  } else if (net.size() >= 40 && (h[0] >> 4) == 6) {
    src.family = dst.family = Family::kV6;
    proto = h[6];
    memcpy(src.bytes.data(), h + 8, 16);
    memcpy(dst.bytes.data(), h + 24, 16);
  } else {
    return "";
  }
  const bool ports = (proto == 6 || proto == 17 || proto == 132) && th.size() >= 4;
  auto addr = [&](const IpAddr& a, int at) {
    std::string s = a.family == Family::kV6 ? absl::StrCat("[", a.ToString(), "]") : a.ToString();
    if (ports) {
      const auto* t = reinterpret_cast<const uint8_t*>(th.data());
      absl::StrAppend(&s, ":", (t[at] << 8) | t[at + 1]);
    }
    return s;
  };
  return absl::StrCat(ProtoName(proto), " ", addr(src, 0), " -> ", addr(dst, 2));
}

const char* VerdictName(int32_t v) {
  switch (v) {
    case NF_ACCEPT: return "accept";
    case NF_DROP: return "drop";
    case NF_QUEUE: return "queue";
    case NF_STOLEN: return "stolen";
    case NFT_CONTINUE: return "continue";
    case NFT_BREAK: return "break";
    case NFT_JUMP: return "jump";
    case NFT_GOTO: return "goto";
    case NFT_RETURN: return "return";
    default: return "verdict";
  }
}

bool Terminal(int32_t v) { return v == NF_ACCEPT || v == NF_DROP || v == NF_QUEUE || v == NF_STOLEN; }

std::string ServiceOfPortKey(const std::string& port_key) {
  // "ns/name/proto/port" -> "ns/name"
  size_t slash = port_key.find('/');
  if (slash == std::string::npos) return port_key;
  slash = port_key.find('/', slash + 1);
  return slash == std::string::npos ? port_key : port_key.substr(0, slash);
}

}  // namespace

std::string TraceStep::Line() const {
  std::string out = packet.empty() ? absl::StrCat("packet ", absl::Hex(id)) : packet;
  absl::StrAppend(&out, "  ", hook, ": ");
  std::vector<std::string> words = path;
  if (verdict == "drop") {
    words.push_back("dropped");
  } else if (verdict == "reject") {
    words.push_back("rejected");
  } else if (verdict == "queue" || verdict == "stolen") {
    words.push_back(verdict);
  } else {
    words.push_back("accepted");
  }
  absl::StrAppend(&out, absl::StrJoin(words, " -> "));
  if (!decided_by.empty() && (verdict == "drop" || verdict == "reject")) absl::StrAppend(&out, " (", decided_by, ")");
  return out;
}

std::string TraceDecoder::Describe(const TraceAttrs& a, TraceStep* step) {
  const Family fam = a.nfproto == NFPROTO_IPV6 ? Family::kV6 : Family::kV4;
  const std::string rule = absl::StrCat("chain ", a.chain, " rule ", a.rule_handle);
  if (a.type == NFT_TRACETYPE_RETURN) return "";
  if (a.type == NFT_TRACETYPE_POLICY) return "";
  ChainKind kind;
  Family f;
  std::string port_key;
  auto name_service = [&](const std::string& pk) {
    if (step->service.empty()) {
      step->service_port = pk;
      step->service = ServiceOfPortKey(pk);
    }
  };
  if (a.chain == kServicesChain) {
    if (a.verdict == NFT_GOTO || a.verdict == NFT_JUMP) {
      if (ParseServiceChainName(a.verdict_chain, &kind, &f, &port_key)) {
        name_service(port_key);
        const char* via = kind == ChainKind::kSvc || kind == ChainKind::kLocal ? "services map" : "frontend map";
        return absl::StrCat(via, " -> ", a.verdict_chain, " (service ", ServiceOfPortKey(port_key), ")");
      }
      return absl::StrCat("services -> ", a.verdict_chain);
    }
    if (a.verdict == NF_DROP) {
      step->verdict = "reject";
      step->decided_by = rule;
      return "a cluster IP on a port no service has";
    }
    return "";
  }
  if (ParseServiceChainName(a.chain, &kind, &f, &port_key)) {
    name_service(port_key);
    if (a.verdict == NFT_GOTO || a.verdict == NFT_JUMP) {
      if (a.verdict_chain.rfind("pick", 0) == 0) {
        step->ticket = a.mark;
        return absl::StrFormat("ticket 0x%08x -> %s", a.mark, a.verdict_chain);
      }
      return a.verdict_chain;
    }
    if (a.verdict == NF_DROP) {
      step->verdict = "drop";
      step->decided_by = rule;
      return kind == ChainKind::kFw ? "source not in loadBalancerSourceRanges" : "";
    }
    return "";
  }
  if (a.chain.rfind("pick", 0) == 0) {
    const uint32_t ticket = a.has_mark ? a.mark : step->ticket;
    if (step->ticket == 0) step->ticket = ticket;
    const uint32_t index = (ticket & ~(kTicketBit | kLocalBit)) >> kIndexShift;
    if (auto it = names_.port_keys.find(index); it != names_.port_keys.end()) name_service(it->second);
    if (a.verdict == NF_ACCEPT) {
      const auto& backends = names_.backends[fam == Family::kV6 ? 1 : 0];
      auto it = backends.upper_bound(ticket);
      step->verdict = "dnat";
      if (it != backends.begin() && ticket <= (--it)->second.last) {
        const IpAddr& addr = it->second.addr;
        step->endpoint = absl::StrCat(fam == Family::kV6 ? "[" + addr.ToString() + "]" : addr.ToString(), ":",
                                      it->second.port);
        std::string w = absl::StrCat("dnat ", step->endpoint);
        auto n = names_.endpoint_names.find(absl::StrCat(step->service, " ", addr.ToString()));
        std::vector<std::string> notes;
        if (n != names_.endpoint_names.end() && !n->second.empty()) {
          step->endpoint_name = n->second;
          notes.push_back("endpoint " + n->second);
        }
        if (ticket & kLocalBit) notes.push_back("local endpoints only");
        if (!notes.empty()) absl::StrAppend(&w, " (", absl::StrJoin(notes, ", "), ")");
        return w;
      }
      return absl::StrFormat("dnat (ticket 0x%08x: no endpoint known for it)", ticket);
    }
    if (a.verdict == NF_DROP) {
      step->decided_by = rule;
      if (ticket & kLocalBit) {
        step->verdict = "drop";
        return "no local endpoint (traffic policy Local)";
      }
      step->verdict = "reject";
      return "no endpoints";
    }
    return "";
  }
  if (a.chain == kMasqueradingChain) {
    if (a.verdict == NF_ACCEPT) {
      step->masquerade = true;
      step->verdict = "masquerade";
      return "masquerade";
    }
    if (a.verdict == NFT_RETURN) return "not masqueraded";
    return "";
  }
  if (a.chain == kPreroutingChain || a.chain == kOutputChain || a.chain == kPostroutingChain ||
      a.chain == kMarkRestoreChain || a.chain == kMarkRestoreOutputChain) {
    if (a.verdict == NF_DROP) {
      step->verdict = "drop";
      step->decided_by = rule;
    }
    return "";
  }
  if (a.verdict == NF_DROP) {
    step->verdict = "drop";
    step->decided_by = rule;
  }
  return a.has_verdict && a.verdict != NFT_CONTINUE ? absl::StrCat(rule, ": ", VerdictName(a.verdict)) : "";
}

std::optional<TraceStep> TraceDecoder::Add(const TraceAttrs& a) {
  if (!a.network_header.empty()) {
    std::string p = PacketText(a.network_header, a.transport_header);
    if (!p.empty()) {
      if (packets_.emplace(a.id, p).second) {
        order_.push_back(a.id);
        while (order_.size() > kMaxPackets) {
          packets_.erase(order_.front());
          open_.erase(order_.front());
          order_.pop_front();
        }
      } else {
        packets_[a.id] = p;
      }
    }
  }
  const bool terminal = (a.type == NFT_TRACETYPE_POLICY) || (a.type == NFT_TRACETYPE_RULE && Terminal(a.verdict));
  const int32_t final_verdict = a.type == NFT_TRACETYPE_POLICY ? static_cast<int32_t>(a.policy) : a.verdict;
  if (a.table == TraceTableName(names_.table)) return std::nullopt;
  if (a.table != names_.table) {
    // Another table's chain: only its drops are reported.
    if (!terminal || final_verdict != NF_DROP) return std::nullopt;
    TraceStep s;
    s.id = a.id;
    auto p = packets_.find(a.id);
    if (p != packets_.end()) s.packet = p->second;
    s.hook = absl::StrCat("table ", a.table, " chain ", a.chain);
    s.verdict = "drop";
    s.decided_by = a.type == NFT_TRACETYPE_POLICY ? "policy drop" : absl::StrCat("rule ", a.rule_handle);
    return s;
  }
  auto [it, fresh] = open_.try_emplace(a.id);
  TraceStep& step = it->second;
  if (fresh) {
    step.id = a.id;
    step.hook = a.chain;
  }
  std::string w = Describe(a, &step);
  if (!w.empty()) step.path.push_back(std::move(w));
  if (!terminal) return std::nullopt;
  TraceStep done = std::move(step);
  open_.erase(it);
  if (auto p = packets_.find(a.id); p != packets_.end()) done.packet = p->second;
  if (final_verdict == NF_DROP) {
    if (done.verdict != "reject") done.verdict = "drop";
    if (done.decided_by.empty()) {
      done.decided_by = a.type == NFT_TRACETYPE_POLICY ? "policy drop" : absl::StrCat("chain ", a.chain, " rule ", a.rule_handle);
    }
  } else if (final_verdict == NF_ACCEPT) {
    if (done.verdict.empty() || done.verdict == "drop" || done.verdict == "reject") done.verdict = "accept";
  } else {
    done.verdict = VerdictName(final_verdict);
  }
  // Traversals that only restore the mark, or where nothing of ours
  // matched, are noise.
  const bool quiet_chain = done.hook == kMarkRestoreChain || done.hook == kMarkRestoreOutputChain;
  if (done.verdict == "accept" && (quiet_chain || done.path.empty()) && done.hook != kPostroutingChain) {
    return std::nullopt;
  }
  if (done.hook == kPostroutingChain && done.path.empty() && done.verdict == "accept") done.path.push_back("not masqueraded");
  return done;
}

absl::StatusOr<std::unique_ptr<TraceListener>> TraceListener::Open() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("opening a netfilter netlink socket: ", strerror(errno)));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("binding the trace socket: ", strerror(err)));
  }
  const int group = NFNLGRP_NFTRACE;
  if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
    const int err = errno;
    close(fd);
    return absl::PermissionDeniedError(absl::StrCat("joining the nf_tables trace group: ", strerror(err)));
  }
  const int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
  return std::unique_ptr<TraceListener>(new TraceListener(fd));
}

TraceListener::~TraceListener() { close(fd_); }

std::vector<TraceAttrs> TraceListener::Read(absl::Duration wait, bool* lost) {
  std::vector<TraceAttrs> out;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) <= 0) return out;
  std::vector<char> in(1 << 16);
  for (int i = 0; i < 64; ++i) {
    const ssize_t len = recv(fd_, in.data(), in.size(), MSG_DONTWAIT);
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        *lost = true;
        continue;
      }
      break;
    }
    int rem = static_cast<int>(len);
    for (const nlmsghdr* m = reinterpret_cast<nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem);
         m = mnl_nlmsg_next(m, &rem)) {
      if (std::optional<TraceAttrs> t = ParseTraceMessage(m)) out.push_back(std::move(*t));
    }
  }
  return out;
}

}  // namespace nftproxy::dp
