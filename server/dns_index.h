// The DNS responder's view of the services (serve --dns-address): what
// names exist under the cluster domain and what each answers, kept by the
// write engine within each write (server/dns_server.h is the sink), and the
// query path from a request's bytes to an answer's bytes (ldns parses and
// builds every message; no hand-written wire code). No sockets, no
// protobuf: the server's edge converts its resources to DnsService.
//
// Names, with D the cluster domain (Kubernetes' DNS specification):
//   SVC.NS.svc.D            A/AAAA: the cluster IPs; headless (no cluster
//                           IP): the ready endpoints' addresses;
//                           ExternalName: CNAME to the external name
//   HOST.SVC.NS.svc.D       headless: A/AAAA of the endpoint with that
//                           hostname (or its address with dashes, 10-1-2-3)
//   _PORT._PROTO.SVC.NS.svc.D  SRV for each named port
//   reverse names           PTR for cluster IPs (and headless endpoints
//                           with a hostname)
// Other names under D: NXDOMAIN (NODATA for D, svc.D and NS.svc.D of a
// namespace with services). Names outside D: forwarded.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace nftproxy::server {

struct DnsAddr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  // Parses "10.0.0.1" or "fd00::1"; nullopt otherwise.
  static std::optional<DnsAddr> Parse(absl::string_view text);
  std::string ToString() const;
  // 1.0.0.10.in-addr.arpa / the nibble form under ip6.arpa (lower case, no dot at the end).
  std::string ReverseName() const;
  // 10-0-0-1 / fd00--1: an endpoint's name without a hostname.
  std::string DashedName() const;
  bool operator<(const DnsAddr& o) const { return std::tie(v6, bytes) < std::tie(o.v6, o.bytes); }
  bool operator==(const DnsAddr& o) const { return v6 == o.v6 && bytes == o.bytes; }
};

struct DnsPort {
  std::string name;   // empty: no SRV record
  std::string proto;  // "tcp", "udp", "sctp"
  uint16_t port = 0;
};

struct DnsEndpoint {
  std::string hostname;  // empty: named by its address
  std::vector<DnsAddr> addresses;
};

// One service as DNS sees it.
struct DnsService {
  std::string ns, name;
  std::vector<DnsAddr> cluster_ips;  // empty (and no external name): headless
  std::string external_name;         // non-empty: ExternalName
  std::vector<DnsPort> ports;
  std::vector<DnsEndpoint> endpoints;  // ready ones; used when headless
  bool headless() const { return cluster_ips.empty() && external_name.empty(); }
};

// A record of an answer, for tests and for building the message:
// owner name (lower case, with the dot at the end), type, data in
// presentation format ("10.0.0.1", "0 100 80 web.ns.svc.cluster.local.").
struct DnsRecord {
  std::string name;
  uint16_t type = 0;
  std::string data;
  bool operator==(const DnsRecord& o) const { return name == o.name && type == o.type && data == o.data; }
};

enum class DnsRcode : uint8_t { kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5 };

struct DnsLookup {
  // Not a cluster name: the query goes upstream as it is.
  bool forward = false;
  DnsRcode rcode = DnsRcode::kNoError;
  std::vector<DnsRecord> answers;
  // An ExternalName's target, when the query asks for other records than
  // the CNAME: resolved upstream and appended (with the dot at the end).
  std::string chase;
  // Under the cluster domain: an answer without records carries the
  // domain's SOA in its authority section (negative caching, RFC 2308).
  bool in_domain = false;
};

class DnsIndex {
 public:
  explicit DnsIndex(std::string domain, uint32_t ttl = 5);

  // Service ns/name is now `svc` (nullopt: gone).
  void Update(const std::string& ns, const std::string& name, std::optional<DnsService> svc);
  void Clear();
  size_t services() const { return services_.size(); }
  const std::string& domain() const { return domain_; }
  uint32_t ttl() const { return ttl_; }

  // What a query for `qname` (any case, with or without the final dot) and
  // `qtype` (LDNS_RR_TYPE_*) answers.
  DnsLookup Lookup(absl::string_view qname, uint16_t qtype) const;

 private:
  using Key = std::pair<std::string, std::string>;  // ns, name
  void Index(const DnsService& s, int delta);
  void AddAddresses(const std::string& owner, const std::vector<DnsAddr>& addrs, uint16_t qtype,
                    std::vector<DnsRecord>* out) const;
  std::string ServiceName(const DnsService& s) const;
  std::string EndpointName(const DnsService& s, const DnsEndpoint& e) const;

  const std::string domain_;  // lower case, no dot at either end
  const uint32_t ttl_;
  std::map<Key, DnsService> services_;
  std::map<std::string, int> namespaces_;  // services per namespace
  // Reverse name -> the names it points to (with reference counts).
  absl::flat_hash_map<std::string, std::map<std::string, int>> ptr_;
};

// The wire side, used by the server and the fuzz target. Limits on what a
// client may make the responder do.
struct DnsWireLimits {
  size_t max_query_bytes = 512;   // larger queries: FORMERR, never parsed
  size_t max_udp_answer = 1232;   // cap on an EDNS0 client's buffer size
};

struct DnsReply {
  std::string wire;  // the answer to send; empty: none (not a query)
  DnsRcode rcode = DnsRcode::kNoError;
  uint16_t qtype = 0;
  // Set when the query must go upstream: `wire` is empty and `upstream_query`
  // is what to send (the query itself, or a query for an ExternalName's
  // target); the answer goes through FinishForward.
  bool forward = false;
  std::string upstream_query;
  std::vector<DnsRecord> prefix;  // the CNAME, for an ExternalName
};

// The answer to one query received over UDP (`tcp` false: truncated to the
// client's buffer, with TC set) or TCP (up to 65535 bytes). Without
// `have_upstream`, names outside the cluster are REFUSED and an
// ExternalName answers its CNAME alone.
DnsReply AnswerQuery(const DnsIndex& index, absl::string_view query, bool tcp, const DnsWireLimits& limits,
                     bool have_upstream);

// Builds the client's answer from the upstream's `response` to
// `reply.upstream_query`, for `query` (the client's). Without a response
// (timeout, garbage): SERVFAIL.
DnsReply FinishForward(absl::string_view query, const DnsReply& reply, std::optional<absl::string_view> response,
                       uint32_t ttl, bool tcp, const DnsWireLimits& limits);

// "A", "AAAA", ... for metrics ("OTHER" past the common ones).
std::string DnsTypeName(uint16_t type);
std::string DnsRcodeName(DnsRcode rcode);

}  // namespace nftproxy::server
