#include "dataplane/nft_reader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <unordered_map>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/names.h"
#include "dataplane/nft_expr.h"

namespace nftproxy::dp {
namespace {

struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
using RulePtr = std::unique_ptr<nftnl_rule, RuleFree>;

// The expressions of a parsed rule as text; *ticket_base gets the offset of
// its first numgen or hash expression.
// `objref_names` (may be null): the names the rule's objref expressions are
// printed with, in order, instead of those parsed (see RuleText).
std::string ExprText(nftnl_rule* r, std::optional<uint32_t>* ticket_base,
                     const std::vector<const char*>* objref_names = nullptr) {
  std::string text;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  if (it == nullptr) return text;
  char buf[512];
  size_t objrefs = 0;
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e != nullptr; e = nftnl_expr_iter_next(it)) {
    // Attributes the kernel always reports, also when we left them unset.
    const char* kind = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    if (kind != nullptr && strcmp(kind, "lookup") == 0 && !nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_FLAGS)) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, 0);
    }
    int n = 0;
    if (objref_names != nullptr && kind != nullptr && strcmp(kind, "objref") == 0 &&
        objrefs < objref_names->size()) {
      // Printed from an expression of our own with the name as given (a
      // name set on the parsed one would leak the parsed copy in 1.2.4).
      // An objref names its object, or the map it finds it in.
      nftnl_expr* named = nftnl_expr_alloc("objref");
      if (nftnl_expr_is_set(e, NFTNL_EXPR_OBJREF_SET_SREG)) {
        nftnl_expr_set_u32(named, NFTNL_EXPR_OBJREF_SET_SREG, nftnl_expr_get_u32(e, NFTNL_EXPR_OBJREF_SET_SREG));
        nftnl_expr_set_str(named, NFTNL_EXPR_OBJREF_SET_NAME, (*objref_names)[objrefs++]);
      } else {
        nftnl_expr_set_u32(named, NFTNL_EXPR_OBJREF_IMM_TYPE, nftnl_expr_get_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE));
        nftnl_expr_set_str(named, NFTNL_EXPR_OBJREF_IMM_NAME, (*objref_names)[objrefs++]);
      }
      n = nftnl_expr_snprintf(buf, sizeof(buf), named, NFTNL_OUTPUT_DEFAULT, 0);
      nftnl_expr_free(named);
    } else {
      n = nftnl_expr_snprintf(buf, sizeof(buf), e, NFTNL_OUTPUT_DEFAULT, 0);
    }
    absl::StrAppend(&text, "[ ", absl::string_view(buf, n < 0 ? 0 : std::min<size_t>(n, sizeof(buf) - 1)), " ]");
    if (ticket_base != nullptr && !ticket_base->has_value()) {
      const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
      if (name != nullptr && strcmp(name, "numgen") == 0) *ticket_base = nftnl_expr_get_u32(e, NFTNL_EXPR_NG_OFFSET);
      if (name != nullptr && strcmp(name, "hash") == 0) *ticket_base = nftnl_expr_get_u32(e, NFTNL_EXPR_HASH_OFFSET);
    }
  }
  nftnl_expr_iter_destroy(it);
  return text;
}

// One datagram of replies into `in`: its length. While nothing is queued
// it waits 1 ms at a time, `max_idle` times at most; Unavailable on an error
// or a datagram larger than `in`.
absl::StatusOr<int> ReceiveReplies(NetlinkSocket& socket, std::vector<char>& in, const std::string& what,
                                   int max_idle) {
  for (int idle = 0;;) {
    const ssize_t len = socket.Receive(in.data(), in.size());
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && ++idle < max_idle) {
        usleep(1000);
        continue;
      }
      return absl::UnavailableError(absl::StrCat("reading ", what, ": ", strerror(errno)));
    }
    if (static_cast<size_t>(len) > in.size()) {
      return absl::UnavailableError(absl::StrCat("reading ", what, ": a reply of ", len, " bytes was cut"));
    }
    return static_cast<int>(len);
  }
}

// One dump request: the messages of the answer go to `each` until DONE.
// *gen gets the ruleset generation of the answer (its low 16 bits, as the
// kernel puts it in every message); a dump that saw the ruleset change
// (NLM_F_DUMP_INTR) or a different generation than *gen is Aborted.
absl::Status Dump(NetlinkSocket& socket, uint32_t* seq, uint16_t type, const std::string& what,
                  const std::function<void(nlmsghdr*)>& payload, const std::function<void(const nlmsghdr*)>& each,
                  std::optional<uint16_t>* gen) {
  std::vector<char> out(MNL_SOCKET_BUFFER_SIZE);
  const uint32_t my_seq = (*seq)++;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(out.data(), type, NFPROTO_INET, NLM_F_DUMP, my_seq);
  payload(nlh);
  const iovec iov{nlh, nlh->nlmsg_len};
  if (socket.Send(&iov, 1) < 0) return absl::UnavailableError(absl::StrCat("asking for ", what, ": ", strerror(errno)));
  std::vector<char> in(1 << 17);
  for (;;) {
    // The kernel fills the next part of a dump as the previous one is read,
    // so the queue is not empty for long.
    absl::StatusOr<int> len = ReceiveReplies(socket, in, what, 5000);
    if (!len.ok()) return len.status();
    int rem = *len;
    for (const nlmsghdr* m = reinterpret_cast<const nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem);
         m = mnl_nlmsg_next(m, &rem)) {
      if (m->nlmsg_seq != my_seq) continue;  // a late answer to something else
      if (m->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (m->nlmsg_type == NLMSG_ERROR) {
        const int err = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
        if (err == 0) continue;
        if (err == ENOENT) return absl::NotFoundError(absl::StrCat(what, ": ", strerror(err)));
        return absl::UnavailableError(absl::StrCat("reading ", what, ": ", strerror(err)));
      }
      if (m->nlmsg_flags & NLM_F_DUMP_INTR) return absl::AbortedError(absl::StrCat(what, " changed while read"));
      const uint16_t g = ntohs(static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(m))->res_id);
      if (!gen->has_value()) *gen = g;
      if (**gen != g) return absl::AbortedError(absl::StrCat("the ruleset changed while ", what, " was read"));
      each(m);
    }
  }
}

// The counter objects of the table into *out.
absl::Status DumpCounters(NetlinkSocket& socket, uint32_t* seq, const std::string& table, KernelCounters* out,
                          std::optional<uint16_t>* gen) {
  return Dump(
      socket, seq, NFT_MSG_GETOBJ, absl::StrCat("the counters of table inet ", table),
      [&](nlmsghdr* nlh) {
        nftnl_obj* o = nftnl_obj_alloc();
        nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table.c_str());
        nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
        nftnl_obj_nlmsg_build_payload(nlh, o);
        nftnl_obj_free(o);
      },
      [&](const nlmsghdr* m) {
        nftnl_obj* o = nftnl_obj_alloc();
        if (nftnl_obj_nlmsg_parse(m, o) == 0) {
          const char* t = nftnl_obj_get_str(o, NFTNL_OBJ_TABLE);
          const char* n = nftnl_obj_get_str(o, NFTNL_OBJ_NAME);
          if (t != nullptr && n != nullptr && table == t &&
              nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) == NFT_OBJECT_COUNTER) {
            (*out)[n] = CounterValue{nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS),
                                     nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES)};
          }
        }
        nftnl_obj_free(o);
      },
      gen);
}

absl::Status ReadOnce(NetlinkSocket& socket, uint32_t* seq, const std::string& table, KernelTable* out) {
  *out = KernelTable{};
  std::optional<uint16_t> gen;
  const std::string tname = absl::StrCat("table inet ", table);
  // Chains.
  absl::Status s = Dump(
      socket, seq, NFT_MSG_GETCHAIN, "the chains of " + tname,
      [&](nlmsghdr* nlh) {
        nftnl_chain* c = nftnl_chain_alloc();
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table.c_str());
        nftnl_chain_nlmsg_build_payload(nlh, c);
        nftnl_chain_free(c);
      },
      [&](const nlmsghdr* m) {
        nftnl_chain* c = nftnl_chain_alloc();
        if (nftnl_chain_nlmsg_parse(m, c) == 0) {
          const char* t = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);
          const char* n = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
          if (t != nullptr && n != nullptr && table == t) out->chains[n];
        }
        nftnl_chain_free(c);
      },
      &gen);
  if (!s.ok()) return s;
  out->exists = true;
  // Rules, in each chain's order.
  s = Dump(
      socket, seq, NFT_MSG_GETRULE, "the rules of " + tname,
      [&](nlmsghdr* nlh) {
        nftnl_rule* r = nftnl_rule_alloc();
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, r);
        nftnl_rule_free(r);
      },
      [&](const nlmsghdr* m) {
        RulePtr r(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(m, r.get()) != 0) return;
        const char* t = nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE);
        const char* c = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
        if (t == nullptr || c == nullptr || table != t) return;
        std::optional<uint32_t> base;
        out->chains[c].push_back(ExprText(r.get(), &base));
        if (base.has_value() && !out->ticket_bases.count(c)) out->ticket_bases[c] = *base;
      },
      &gen);
  if (!s.ok()) return s;
  // Sets.
  s = Dump(
      socket, seq, NFT_MSG_GETSET, "the sets of " + tname,
      [&](nlmsghdr* nlh) {
        nftnl_set* set = nftnl_set_alloc();
        nftnl_set_set_str(set, NFTNL_SET_TABLE, table.c_str());
        nftnl_set_nlmsg_build_payload(nlh, set);
        nftnl_set_free(set);
      },
      [&](const nlmsghdr* m) {
        nftnl_set* set = nftnl_set_alloc();
        if (nftnl_set_nlmsg_parse(m, set) == 0) {
          const char* t = nftnl_set_get_str(set, NFTNL_SET_TABLE);
          const char* n = nftnl_set_get_str(set, NFTNL_SET_NAME);
          if (t != nullptr && n != nullptr && table == t) out->sets.insert(n);
        }
        nftnl_set_free(set);
      },
      &gen);
  if (!s.ok()) return s;
  // Elements of each set.
  for (const std::string& name : out->sets) {
    if (absl::StartsWith(name, "affinity")) continue;
    std::vector<KernelElem>& elems = out->elements[name];
    s = Dump(
        socket, seq, NFT_MSG_GETSETELEM, absl::StrCat("the elements of set ", name, " of ", tname),
        [&](nlmsghdr* nlh) {
          nftnl_set* set = nftnl_set_alloc();
          nftnl_set_set_str(set, NFTNL_SET_TABLE, table.c_str());
          nftnl_set_set_str(set, NFTNL_SET_NAME, name.c_str());
          nftnl_set_elems_nlmsg_build_payload(nlh, set);
          nftnl_set_free(set);
        },
        [&](const nlmsghdr* m) {
          nftnl_set* set = nftnl_set_alloc();
          if (nftnl_set_elems_nlmsg_parse(m, set) == 0) {
            nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(set);
            for (nftnl_set_elem* e = it ? nftnl_set_elems_iter_next(it) : nullptr; e != nullptr;
                 e = nftnl_set_elems_iter_next(it)) {
              KernelElem k;
              uint32_t len = 0;
              if (const void* p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len)) {
                k.key.assign(static_cast<const char*>(p), len);
              }
              if (const void* p = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &len)) {
                k.data.assign(static_cast<const char*>(p), len);
              }
              if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT)) {
                k.verdict = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT);
              }
              if (const char* c = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN)) k.chain = c;
              if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_OBJREF)) {
                k.objref = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF);
              }
              if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS)) {
                k.interval_end = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END;
              }
              elems.push_back(std::move(k));
            }
            if (it) nftnl_set_elems_iter_destroy(it);
          }
          nftnl_set_free(set);
        },
        &gen);
    if (!s.ok()) return s;
  }
  // Counter objects. A dump walks the object list from its start for every
  // part (quadratic: 2.3 s of kernel time at 110,000 objects), so a table
  // that refers to many is asked for those by name: the port counters of its
  // service chains and the objects its object maps name. A counter nothing
  // refers to is then not seen (nftproxy makes none; creating one of the
  // same name later fails, and a full replace follows).
  std::set<std::string> referred;
  for (const auto& [chain, rules] : out->chains) {
    ChainKind kind;
    Family f;
    std::string port_key;
    if (ParseServiceChainName(chain, &kind, &f, &port_key)) referred.insert(ConnCounterName(port_key));
  }
  for (const auto& [set, elems] : out->elements) {
    for (const KernelElem& e : elems) {
      if (!e.objref.empty()) referred.insert(e.objref);
    }
  }
  if (referred.size() <= kCounterDumpMax) return DumpCounters(socket, seq, table, &out->counters, &gen);
  absl::StatusOr<KernelCounters> counters =
      ReadCountersByName(socket, seq, table, std::vector<std::string>(referred.begin(), referred.end()), &gen);
  if (!counters.ok()) return counters.status();
  out->counters = std::move(*counters);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KernelTable> ReadTable(NetlinkSocket& socket, uint32_t* seq, const std::string& table) {
  KernelTable out;
  absl::Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    s = ReadOnce(socket, seq, table, &out);
    if (!absl::IsAborted(s)) break;
  }
  if (absl::IsNotFound(s)) return KernelTable{};  // no such table
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<KernelCounters> ReadCountersByName(NetlinkSocket& socket, uint32_t* seq, const std::string& table,
                                                  const std::vector<std::string>& names, std::optional<uint16_t>* gen) {
  constexpr size_t kPerSend = 200;
  // A request is a header and three attributes: well under 512 bytes with
  // a name of at most 256.
  constexpr size_t kRequestRoom = 512;
  KernelCounters out;
  std::vector<char> req(kPerSend * kRequestRoom);
  std::vector<char> in(MNL_SOCKET_BUFFER_SIZE * 4);
  const std::string what = absl::StrCat("the counters of table inet ", table);
  for (size_t start = 0; start < names.size(); start += kPerSend) {
    const size_t n = std::min(kPerSend, names.size() - start);
    const uint32_t first = *seq;
    *seq += static_cast<uint32_t>(n);
    size_t used = 0;
    for (size_t i = 0; i < n; ++i) {
      if (names[start + i].size() > 256) return absl::InvalidArgumentError("a counter name over 256 bytes");
      nlmsghdr* nlh = nftnl_nlmsg_build_hdr(req.data() + used, NFT_MSG_GETOBJ, NFPROTO_INET, 0,
                                            first + static_cast<uint32_t>(i));
      nftnl_obj* o = nftnl_obj_alloc();
      nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table.c_str());
      nftnl_obj_set_str(o, NFTNL_OBJ_NAME, names[start + i].c_str());
      nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
      nftnl_obj_nlmsg_build_payload(nlh, o);
      nftnl_obj_free(o);
      used += NLMSG_ALIGN(nlh->nlmsg_len);
    }
    const iovec iov{req.data(), used};
    ssize_t sent;
    do {
      sent = socket.Send(&iov, 1);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return absl::UnavailableError(absl::StrCat("asking for ", what, ": ", strerror(errno)));
    // One answer per request, the object or an error, queued within sendmsg.
    size_t answered = 0;
    while (answered < n) {
      absl::StatusOr<int> len = ReceiveReplies(socket, in, what, 1000);
      if (!len.ok()) return len.status();
      int rem = *len;
      for (const nlmsghdr* m = reinterpret_cast<const nlmsghdr*>(in.data()); mnl_nlmsg_ok(m, rem);
           m = mnl_nlmsg_next(m, &rem)) {
        if (m->nlmsg_seq - first >= n) continue;  // a late answer to something else
        ++answered;
        if (m->nlmsg_type == NLMSG_ERROR) {
          const int err = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
          if (err == 0 || err == ENOENT) continue;  // gone since the names were taken
          return absl::UnavailableError(absl::StrCat("reading ", what, ": ", strerror(err)));
        }
        if (gen != nullptr) {
          const uint16_t g = ntohs(static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(m))->res_id);
          if (!gen->has_value()) *gen = g;
          if (**gen != g) return absl::AbortedError(absl::StrCat("the ruleset changed while ", what, " was read"));
        }
        nftnl_obj* o = nftnl_obj_alloc();
        if (nftnl_obj_nlmsg_parse(m, o) == 0) {
          const char* name = nftnl_obj_get_str(o, NFTNL_OBJ_NAME);
          if (name != nullptr) {
            // Answers come in request order, and the names are sorted.
            out.insert_or_assign(out.end(), name,
                                 CounterValue{nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS),
                                              nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES)});
          }
        }
        nftnl_obj_free(o);
      }
    }
  }
  return out;
}

namespace {

// "ns/name/proto/port" (neither a namespace nor a name holds a '/').
bool ParsePortKey(const std::string& key, PortConnections* p) {
  const std::vector<std::string> parts = absl::StrSplit(key, '/');
  uint32_t port = 0;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[3], &port) || port > 65535) return false;
  p->ns = parts[0];
  p->service = parts[1];
  if (parts[2] == "tcp") p->proto = L4Proto::kTcp;
  else if (parts[2] == "udp") p->proto = L4Proto::kUdp;
  else if (parts[2] == "sctp") p->proto = L4Proto::kSctp;
  else return false;
  p->port = static_cast<uint16_t>(port);
  return true;
}

}  // namespace

std::vector<PortConnections> ConnectionsOf(const KernelCounters& counters) {
  std::unordered_map<std::string, PortConnections> ports;  // by port key
  for (const auto& [name, value] : counters) {
    std::string key = PortKeyOfConnCounter(name);
    EndpointConnections ep;
    const bool endpoint = key.empty() && ParseEndpointCounterName(name, &key, &ep.addr, &ep.port);
    if (key.empty()) continue;
    auto [it, fresh] = ports.try_emplace(key);
    if (fresh && !ParsePortKey(key, &it->second)) {
      ports.erase(it);
      continue;
    }
    if (endpoint) {
      ep.connections = value.packets;
      it->second.endpoints.push_back(ep);
    } else {
      it->second.connections = value.packets;
    }
  }
  std::vector<PortConnections> out;
  out.reserve(ports.size());
  for (auto& [key, p] : ports) {
    std::sort(p.endpoints.begin(), p.endpoints.end(), [](const EndpointConnections& a, const EndpointConnections& b) {
      return std::tie(a.addr, a.port) < std::tie(b.addr, b.port);
    });
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(), [](const PortConnections& a, const PortConnections& b) {
    return std::tie(a.ns, a.service, a.proto, a.port) < std::tie(b.ns, b.service, b.proto, b.port);
  });
  return out;
}

std::string RuleText(const RuleStmts& rule) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
  EncodeRule(r.get(), rule);
  // Through the wire form, as the kernel's answer comes.
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_NEWRULE, NFPROTO_INET, 0, 0);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  RulePtr back(nftnl_rule_alloc());
  if (nftnl_rule_nlmsg_parse(nlh, back.get()) != 0) return "(unparsable)";
  // libnftnl 1.2.4 puts an objref's name (or its map's) without its NUL
  // (mnl_attr_put_str):
  // a name whose length is a multiple of 4 parses back with the next
  // attribute's bytes. The kernel reads it by its length and dumps it with
  // the NUL, so the names are put back as they were given.
  std::vector<const char*> names;
  for (const Stmt& s : rule) {
    if (s.kind == StmtKind::kCounterRef || s.kind == StmtKind::kCounterMarkMap) names.push_back(s.name);
  }
  return ExprText(back.get(), nullptr, &names);
}

}  // namespace nftproxy::dp
