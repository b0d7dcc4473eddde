// The DNS responder's query path (server/dns_index.h): any bytes as a query
// over UDP or TCP, with or without an upstream, against an index holding
// every kind of service; when the query goes upstream, the rest of the input
// is the upstream's answer. Must hold: an answer is a well-formed response
// (ldns parses it) with the query's id; over UDP it fits the client's buffer
// (at most max_udp_answer); a query sent upstream parses; nothing answers a
// response.
//
// Input: byte 0: bit 0 TCP, bit 1 an upstream, bit 2 the answer takes the
// upstream query's (random) id; bytes 1-2: the query's
// length (big-endian); then the query, then the upstream's answer.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "server/dns_index.h"
// After the C++ headers: with clang, ldns's headers break libstdc++'s
// <string> when they come first.
#include <ldns/ldns.h>

namespace {

using nftproxy::server::DnsAddr;
using nftproxy::server::DnsIndex;
using nftproxy::server::DnsReply;
using nftproxy::server::DnsService;
using nftproxy::server::DnsWireLimits;

void Finding(const char* what) {
  fprintf(stderr, "FINDING: %s\n", what);
  abort();
}

const DnsIndex& Index() {
  static const DnsIndex* idx = [] {
    auto* d = new DnsIndex("cluster.local");
    auto a = [](const char* s) { return *DnsAddr::Parse(s); };
    d->Update("default", "web",
              DnsService{"default", "web", {a("10.96.0.10"), a("fd00::10")}, "", {{"http", "tcp", 80}}, {}});
    d->Update("default", "ext", DnsService{"default", "ext", {}, "example.com", {}, {}});
    DnsService many{"default", "many", {}, "", {{"http", "tcp", 80}, {"dns", "udp", 53}}, {}};
    for (int i = 0; i < 200; ++i) {
      many.endpoints.push_back({i % 3 == 0 ? "host" + std::to_string(i) : "",
                                {a(("10.1." + std::to_string(i / 100) + "." + std::to_string(i % 100 + 1)).c_str())}});
    }
    d->Update("default", "many", many);
    return d;
  }();
  return *idx;
}

// Checks an answer to `query` (the client's bytes).
void CheckAnswer(const std::string& query, const DnsReply& r, bool tcp, const DnsWireLimits& limits) {
  if (r.wire.empty()) return;
  if (!tcp && r.wire.size() > limits.max_udp_answer) Finding("a UDP answer larger than the client may take");
  ldns_pkt* p = nullptr;
  if (ldns_wire2pkt(&p, reinterpret_cast<const uint8_t*>(r.wire.data()), r.wire.size()) != LDNS_STATUS_OK) {
    Finding("an answer ldns cannot parse");
  }
  const uint16_t id = static_cast<uint16_t>((static_cast<uint8_t>(query[0]) << 8) | static_cast<uint8_t>(query[1]));
  if (!ldns_pkt_qr(p) || ldns_pkt_id(p) != id) Finding("an answer without QR or with another id");
  ldns_pkt_free(p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const bool tcp = data[0] & 1, upstream = data[0] & 2;
  const size_t n = std::min<size_t>(size - 3, (static_cast<size_t>(data[1]) << 8) | data[2]);
  const std::string query(reinterpret_cast<const char*>(data + 3), n);
  const std::string rest(reinterpret_cast<const char*>(data + 3 + n), size - 3 - n);
  DnsWireLimits limits;
  DnsReply r = nftproxy::server::AnswerQuery(Index(), query, tcp, limits, upstream);
  if (query.size() >= 3 && (static_cast<uint8_t>(query[2]) & 0x80) && !r.wire.empty()) Finding("a response answered");
  if (!r.forward) {
    CheckAnswer(query, r, tcp, limits);
    return 0;
  }
  if (!upstream) Finding("forwarded without an upstream");
  ldns_pkt* up = nullptr;
  if (ldns_wire2pkt(&up, reinterpret_cast<const uint8_t*>(r.upstream_query.data()), r.upstream_query.size()) !=
      LDNS_STATUS_OK) {
    Finding("a query for the upstream that does not parse");
  }
  ldns_pkt_free(up);
  // The upstream's answer: the input's rest, or none (a timeout).
  std::string response = rest;
  if ((data[0] & 4) && response.size() >= 2) response.replace(0, 2, r.upstream_query.substr(0, 2));
  CheckAnswer(query, nftproxy::server::FinishForward(query, r, response, 5, tcp, limits), tcp, limits);
  CheckAnswer(query, nftproxy::server::FinishForward(query, r, std::nullopt, 5, tcp, limits), tcp, limits);
  return 0;
}
