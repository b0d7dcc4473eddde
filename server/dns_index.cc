#include "server/dns_index.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace nftproxy::server {
namespace {

// ldns objects, freed with their own functions.
struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;
struct RrFree {
  void operator()(ldns_rr* r) const { ldns_rr_free(r); }
};
using Rr = std::unique_ptr<ldns_rr, RrFree>;

Pkt Parse(absl::string_view wire) {
  ldns_pkt* p = nullptr;
  if (ldns_wire2pkt(&p, reinterpret_cast<const uint8_t*>(wire.data()), wire.size()) != LDNS_STATUS_OK) {
    return nullptr;
  }
  return Pkt(p);
}

std::string ToWire(const ldns_pkt* p) {
  uint8_t* buf = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&buf, p, &size) != LDNS_STATUS_OK) return "";
  std::string out(reinterpret_cast<char*>(buf), size);
  free(buf);  // NOLINT: allocated by ldns
  return out;
}

std::string RdfText(const ldns_rdf* rdf) {
  char* s = ldns_rdf2str(rdf);
  if (s == nullptr) return "";
  std::string out(s);
  free(s);  // NOLINT: allocated by ldns
  return out;
}

const char* TypeText(uint16_t type) {
  switch (type) {
    case LDNS_RR_TYPE_A: return "A";
    case LDNS_RR_TYPE_AAAA: return "AAAA";
    case LDNS_RR_TYPE_CNAME: return "CNAME";
    case LDNS_RR_TYPE_SRV: return "SRV";
    case LDNS_RR_TYPE_PTR: return "PTR";
    case LDNS_RR_TYPE_SOA: return "SOA";
    default: return nullptr;
  }
}

Rr RecordRr(const DnsRecord& r, uint32_t ttl) {
  const char* type = TypeText(r.type);
  if (type == nullptr) return nullptr;
  ldns_rr* rr = nullptr;
  const std::string text = absl::StrCat(r.name, " ", ttl, " IN ", type, " ", r.data);
  if (ldns_rr_new_frm_str(&rr, text.c_str(), ttl, nullptr, nullptr) != LDNS_STATUS_OK) return nullptr;
  return Rr(rr);
}

bool WantsAddress(uint16_t qtype, bool v6) {
  return qtype == LDNS_RR_TYPE_ANY || qtype == (v6 ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A);
}

// The answer to `q` with `rcode` and `answers` (owned records appended
// after `records`), truncated to what the transport carries.
DnsReply Respond(const ldns_pkt* q, DnsRcode rcode, bool authoritative, const std::vector<DnsRecord>& records,
                 const std::vector<const ldns_rr*>& extra, uint32_t ttl, bool tcp, const DnsWireLimits& limits,
                 bool truncated = false, const DnsRecord* soa = nullptr) {
  DnsReply reply;
  reply.rcode = rcode;
  Pkt r(ldns_pkt_new());
  ldns_pkt_set_id(r.get(), ldns_pkt_id(q));
  ldns_pkt_set_qr(r.get(), true);
  ldns_pkt_set_opcode(r.get(), ldns_pkt_get_opcode(q));
  ldns_pkt_set_aa(r.get(), authoritative);
  ldns_pkt_set_rd(r.get(), ldns_pkt_rd(q));
  ldns_pkt_set_ra(r.get(), true);
  ldns_pkt_set_cd(r.get(), ldns_pkt_cd(q));
  ldns_pkt_set_rcode(r.get(), static_cast<uint8_t>(rcode));
  ldns_pkt_set_tc(r.get(), truncated);
  const ldns_rr_list* question = ldns_pkt_question(q);
  if (ldns_rr_list_rr_count(question) == 1) {
    ldns_pkt_push_rr(r.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(ldns_rr_list_rr(question, 0)));
  }
  size_t limit = 65535;
  if (ldns_pkt_edns(q)) {
    ldns_pkt_set_edns_udp_size(r.get(), static_cast<uint16_t>(limits.max_udp_answer));
    if (!tcp) limit = std::clamp<size_t>(ldns_pkt_edns_udp_size(q), 512, limits.max_udp_answer);
  } else if (!tcp) {
    limit = 512;
  }
  if (soa != nullptr) {
    if (Rr rr = RecordRr(*soa, ttl)) ldns_pkt_push_rr(r.get(), LDNS_SECTION_AUTHORITY, rr.release());
  }
  for (const DnsRecord& rec : records) {
    if (Rr rr = RecordRr(rec, ttl)) ldns_pkt_push_rr(r.get(), LDNS_SECTION_ANSWER, rr.release());
  }
  for (const ldns_rr* rr : extra) ldns_pkt_push_rr(r.get(), LDNS_SECTION_ANSWER, ldns_rr_clone(rr));
  reply.wire = ToWire(r.get());
  if (reply.wire.size() > limit) {
    // Truncated: the question alone with TC, and the client asks again over TCP.
    ldns_rr_list_deep_free(ldns_pkt_answer(r.get()));
    ldns_pkt_set_answer(r.get(), ldns_rr_list_new());
    ldns_pkt_set_ancount(r.get(), 0);
    ldns_pkt_set_tc(r.get(), true);
    reply.wire = ToWire(r.get());
  }
  return reply;
}

std::string Lower(absl::string_view s) { return absl::AsciiStrToLower(s); }

// Host-name-like: labels of letters, digits, '-' and '_', 1-63 each, at
// most 253 in all (an ExternalName's target; the API does not check it).
bool IsDnsName(absl::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    }
  }
  return true;
}

}  // namespace

std::optional<DnsAddr> DnsAddr::Parse(absl::string_view text) {
  DnsAddr a;
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

std::string DnsAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

std::string DnsAddr::ReverseName() const {
  std::string out;
  if (!v6) {
    for (int i = 3; i >= 0; --i) absl::StrAppend(&out, bytes[i], ".");
    return out + "in-addr.arpa";
  }
  static const char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out += kHex[bytes[i] & 0xf];
    out += '.';
    out += kHex[bytes[i] >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

std::string DnsAddr::DashedName() const {
  std::string s = ToString();
  std::replace(s.begin(), s.end(), v6 ? ':' : '.', '-');
  return s;
}

DnsIndex::DnsIndex(std::string domain, uint32_t ttl)
    : domain_(Lower(absl::StripSuffix(absl::StripPrefix(domain, "."), "."))), ttl_(ttl) {}

std::string DnsIndex::ServiceName(const DnsService& s) const {
  return absl::StrCat(Lower(s.name), ".", Lower(s.ns), ".svc.", domain_, ".");
}

std::string DnsIndex::EndpointName(const DnsService& s, const DnsEndpoint& e) const {
  const std::string host = e.hostname.empty() ? (e.addresses.empty() ? "" : e.addresses[0].DashedName())
                                              : Lower(e.hostname);
  return absl::StrCat(host, ".", ServiceName(s));
}

void DnsIndex::Index(const DnsService& s, int delta) {
  auto count = [](std::map<std::string, int>& m, const std::string& k, int d) {
    if ((m[k] += d) <= 0) m.erase(k);
  };
  count(namespaces_, Lower(s.ns), delta);
  auto ptr = [&](const DnsAddr& a, const std::string& target) {
    const std::string rev = a.ReverseName();
    auto& targets = ptr_[rev];
    count(targets, target, delta);
    if (targets.empty()) ptr_.erase(rev);
  };
  for (const DnsAddr& a : s.cluster_ips) ptr(a, ServiceName(s));
  if (s.headless()) {
    for (const DnsEndpoint& e : s.endpoints) {
      if (e.hostname.empty()) continue;
      for (const DnsAddr& a : e.addresses) ptr(a, EndpointName(s, e));
    }
  }
}

void DnsIndex::Update(const std::string& ns, const std::string& name, std::optional<DnsService> svc) {
  const Key key{Lower(ns), Lower(name)};
  if (auto it = services_.find(key); it != services_.end()) {
    Index(it->second, -1);
    services_.erase(it);
  }
  if (svc.has_value()) {
    Index(*svc, +1);
    services_.emplace(key, std::move(*svc));
  }
}

void DnsIndex::Clear() {
  services_.clear();
  namespaces_.clear();
  ptr_.clear();
}

void DnsIndex::AddAddresses(const std::string& owner, const std::vector<DnsAddr>& addrs, uint16_t qtype,
                            std::vector<DnsRecord>* out) const {
  for (const DnsAddr& a : addrs) {
    if (!WantsAddress(qtype, a.v6)) continue;
    DnsRecord r{owner, static_cast<uint16_t>(a.v6 ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A), a.ToString()};
    if (std::find(out->begin(), out->end(), r) == out->end()) out->push_back(std::move(r));
  }
}

DnsLookup DnsIndex::Lookup(absl::string_view qname, uint16_t qtype) const {
  DnsLookup l;
  const std::string name = Lower(absl::StripSuffix(qname, "."));
  const std::string owner = name + ".";
  if (absl::EndsWith(name, ".in-addr.arpa") || absl::EndsWith(name, ".ip6.arpa")) {
    auto it = ptr_.find(name);
    if (it == ptr_.end()) {
      l.forward = true;
      return l;
    }
    if (qtype == LDNS_RR_TYPE_PTR || qtype == LDNS_RR_TYPE_ANY) {
      for (const auto& [target, n] : it->second) l.answers.push_back({owner, LDNS_RR_TYPE_PTR, target});
    }
    return l;
  }
  absl::string_view rest;
  if (name == domain_) {
    rest = "";
  } else if (absl::EndsWith(name, absl::StrCat(".", domain_))) {
    rest = absl::string_view(name).substr(0, name.size() - domain_.size() - 1);
  } else {
    l.forward = true;
    return l;
  }
  const std::vector<absl::string_view> labels =
      rest.empty() ? std::vector<absl::string_view>{} : absl::StrSplit(rest, '.');
  const size_t n = labels.size();
  l.rcode = DnsRcode::kNxDomain;
  l.in_domain = true;
  if (n == 0 || (n == 1 && labels[0] == "svc")) {
    l.rcode = DnsRcode::kNoError;  // the domain and svc.D exist, without records
    return l;
  }
  if (n < 2 || labels[n - 1] != "svc") return l;
  const std::string ns(labels[n - 2]);
  if (n == 2) {
    if (namespaces_.count(ns) > 0) l.rcode = DnsRcode::kNoError;
    return l;
  }
  auto it = services_.find(Key{ns, std::string(labels[n - 3])});
  if (it == services_.end()) return l;
  const DnsService& s = it->second;
  if (n == 3) {
    l.rcode = DnsRcode::kNoError;
    if (!s.external_name.empty()) {
      const std::string name = Lower(absl::StripSuffix(s.external_name, "."));
      if (!IsDnsName(name)) return l;  // nothing to point at: NODATA
      std::string target = name + ".";
      l.answers.push_back({owner, LDNS_RR_TYPE_CNAME, target});
      if (qtype != LDNS_RR_TYPE_CNAME) l.chase = std::move(target);
    } else if (!s.headless()) {
      AddAddresses(owner, s.cluster_ips, qtype, &l.answers);
    } else {
      for (const DnsEndpoint& e : s.endpoints) AddAddresses(owner, e.addresses, qtype, &l.answers);
    }
    return l;
  }
  if (n == 4 && s.headless()) {
    for (const DnsEndpoint& e : s.endpoints) {
      if (EndpointName(s, e) != owner) continue;
      l.rcode = DnsRcode::kNoError;
      AddAddresses(owner, e.addresses, qtype, &l.answers);
    }
    return l;
  }
  if (n == 5 && absl::StartsWith(labels[0], "_") && absl::StartsWith(labels[1], "_") && s.external_name.empty()) {
    for (const DnsPort& p : s.ports) {
      if (p.name.empty() || Lower(p.name) != labels[0].substr(1) || p.proto != labels[1].substr(1)) continue;
      l.rcode = DnsRcode::kNoError;
      if (qtype != LDNS_RR_TYPE_SRV && qtype != LDNS_RR_TYPE_ANY) continue;
      if (!s.headless()) {
        l.answers.push_back({owner, LDNS_RR_TYPE_SRV, absl::StrCat("0 100 ", p.port, " ", ServiceName(s))});
        continue;
      }
      std::set<std::string> targets;
      for (const DnsEndpoint& e : s.endpoints) {
        if (!e.addresses.empty()) targets.insert(EndpointName(s, e));
      }
      for (const std::string& t : targets) {
        const size_t weight = std::max<size_t>(1, 100 / targets.size());
        l.answers.push_back({owner, LDNS_RR_TYPE_SRV, absl::StrCat("0 ", weight, " ", p.port, " ", t)});
      }
    }
  }
  return l;
}

DnsReply AnswerQuery(const DnsIndex& index, absl::string_view query, bool tcp, const DnsWireLimits& limits,
                     bool have_upstream) {
  DnsReply reply;
  if (query.size() < 12) return reply;  // not even a header: dropped
  // Too large, or not a message: FORMERR with the query's id, built from an
  // empty packet (the query is never parsed).
  Pkt q = query.size() <= limits.max_query_bytes ? Parse(query) : nullptr;
  if (q == nullptr) {
    if ((static_cast<uint8_t>(query[2]) & 0x80) != 0) return reply;  // a response: never answered
    Pkt empty(ldns_pkt_new());
    ldns_pkt_set_id(empty.get(), static_cast<uint16_t>((static_cast<uint8_t>(query[0]) << 8) |
                                                       static_cast<uint8_t>(query[1])));
    return Respond(empty.get(), DnsRcode::kFormErr, false, {}, {}, 0, tcp, limits);
  }
  if (ldns_pkt_qr(q.get())) return reply;
  if (ldns_pkt_get_opcode(q.get()) != LDNS_PACKET_QUERY) {
    return Respond(q.get(), DnsRcode::kNotImp, false, {}, {}, 0, tcp, limits);
  }
  const ldns_rr_list* question = ldns_pkt_question(q.get());
  if (ldns_rr_list_rr_count(question) != 1) return Respond(q.get(), DnsRcode::kFormErr, false, {}, {}, 0, tcp, limits);
  const ldns_rr* qrr = ldns_rr_list_rr(question, 0);
  reply.qtype = ldns_rr_get_type(qrr);
  const std::string qname = RdfText(ldns_rr_owner(qrr));
  DnsLookup l = index.Lookup(qname, reply.qtype);
  if (!l.forward && ldns_rr_get_class(qrr) != LDNS_RR_CLASS_IN && ldns_rr_get_class(qrr) != LDNS_RR_CLASS_ANY) {
    l = DnsLookup{};
    l.rcode = DnsRcode::kRefused;
  }
  if (l.forward || !l.chase.empty()) {
    if (!have_upstream) {
      if (l.forward) {
        DnsReply r = Respond(q.get(), DnsRcode::kRefused, false, {}, {}, 0, tcp, limits);
        r.qtype = reply.qtype;
        return r;
      }
    } else {
      reply.forward = true;
      reply.prefix = std::move(l.answers);
      if (l.forward) {
        reply.upstream_query = std::string(query);
        return reply;
      }
      // An external name ldns does not take as a name: the CNAME alone.
      ldns_rdf* target = ldns_dname_new_frm_str(l.chase.c_str());
      Pkt chase(target == nullptr ? nullptr
                                  : ldns_pkt_query_new(target, static_cast<ldns_rr_type>(reply.qtype), LDNS_RR_CLASS_IN,
                                                       LDNS_RD));
      if (chase != nullptr) {
        ldns_pkt_set_random_id(chase.get());
        reply.upstream_query = ToWire(chase.get());
        if (!reply.upstream_query.empty()) return reply;
      }
      reply.forward = false;
      l.answers = std::move(reply.prefix);
      reply.prefix.clear();
    }
  }
  std::optional<DnsRecord> soa;
  if (l.in_domain && l.answers.empty() && (l.rcode == DnsRcode::kNoError || l.rcode == DnsRcode::kNxDomain)) {
    const std::string zone = index.domain() + ".";
    soa = DnsRecord{zone, LDNS_RR_TYPE_SOA,
                    absl::StrCat("ns.dns.", zone, " hostmaster.", zone, " 1 7200 1800 86400 ", index.ttl())};
  }
  DnsReply r = Respond(q.get(), l.rcode, true, l.answers, {}, index.ttl(), tcp, limits, false,
                       soa ? &*soa : nullptr);
  r.qtype = reply.qtype;
  return r;
}

DnsReply FinishForward(absl::string_view query, const DnsReply& reply, std::optional<absl::string_view> response,
                       uint32_t ttl, bool tcp, const DnsWireLimits& limits) {
  Pkt q = Parse(query);
  if (q == nullptr) return DnsReply{};
  Pkt up;
  if (response.has_value()) {
    up = Parse(*response);
    Pkt sent = Parse(reply.upstream_query);
    if (up != nullptr && (!ldns_pkt_qr(up.get()) || sent == nullptr || ldns_pkt_id(up.get()) != ldns_pkt_id(sent.get()))) {
      up = nullptr;
    }
  }
  DnsReply out;
  if (up == nullptr) {
    out = Respond(q.get(), DnsRcode::kServFail, false, reply.prefix, {}, ttl, tcp, limits);
  } else if (reply.prefix.empty()) {
    // A plain forward: the upstream's answer as it is (it saw the client's
    // buffer size); truncated here only if it does not fit.
    out.rcode = static_cast<DnsRcode>(ldns_pkt_get_rcode(up.get()));
    out.wire = std::string(*response);
    const size_t limit = tcp ? 65535
                             : ldns_pkt_edns(q.get()) ? std::clamp<size_t>(ldns_pkt_edns_udp_size(q.get()), 512,
                                                                           limits.max_udp_answer)
                                                      : 512;
    if (out.wire.size() > limit) {
      out = Respond(q.get(), out.rcode, false, {}, {}, ttl, tcp, limits, /*truncated=*/true);
    }
  } else {
    std::vector<const ldns_rr*> extra;
    const ldns_rr_list* answers = ldns_pkt_answer(up.get());
    for (size_t i = 0; i < ldns_rr_list_rr_count(answers); ++i) extra.push_back(ldns_rr_list_rr(answers, i));
    out = Respond(q.get(), static_cast<DnsRcode>(ldns_pkt_get_rcode(up.get())), false, reply.prefix, extra, ttl, tcp,
                  limits);
  }
  out.qtype = reply.qtype;
  return out;
}

std::string DnsTypeName(uint16_t type) {
  if (const char* t = TypeText(type)) return t;
  switch (type) {
    case LDNS_RR_TYPE_ANY: return "ANY";
    case LDNS_RR_TYPE_TXT: return "TXT";
    case LDNS_RR_TYPE_MX: return "MX";
    case LDNS_RR_TYPE_NS: return "NS";
    case LDNS_RR_TYPE_SOA: return "SOA";
    default: return "OTHER";
  }
}

std::string DnsRcodeName(DnsRcode rcode) {
  switch (rcode) {
    case DnsRcode::kNoError: return "NOERROR";
    case DnsRcode::kFormErr: return "FORMERR";
    case DnsRcode::kServFail: return "SERVFAIL";
    case DnsRcode::kNxDomain: return "NXDOMAIN";
    case DnsRcode::kNotImp: return "NOTIMP";
    case DnsRcode::kRefused: return "REFUSED";
  }
  return "OTHER";
}

}  // namespace nftproxy::server
