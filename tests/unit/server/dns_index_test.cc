// The DNS responder's record index and query path, without sockets (names,
// case, PTR, SRV, headless, CNAME, truncation, EDNS0), the conversion from
// the desired state, and one real server on loopback.
#include "server/dns_index.h"

#include <arpa/inet.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <ldns/ldns.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/dns_server.h"

namespace nftproxy::server {
namespace {

DnsAddr A(const char* s) { return *DnsAddr::Parse(s); }

DnsIndex Index() {
  DnsIndex idx("cluster.local");
  DnsService web{"default", "web", {A("10.96.0.10"), A("fd00:96::10")}, "", {{"http", "tcp", 80}, {"", "udp", 53}}, {}};
  idx.Update("default", "web", web);
  DnsService db{"shop", "db", {}, "", {{"pg", "tcp", 5432}},
                {{"db-0", {A("10.1.0.1")}}, {"", {A("10.1.0.2"), A("fd00::2")}}}};
  idx.Update("shop", "db", db);
  DnsService ext{"default", "ext", {}, "Example.COM.", {}, {}};
  idx.Update("default", "ext", ext);
  return idx;
}

std::vector<DnsRecord> Answers(const DnsIndex& idx, const std::string& name, uint16_t type, DnsRcode want) {
  DnsLookup l = idx.Lookup(name, type);
  EXPECT_FALSE(l.forward) << name;
  EXPECT_EQ(l.rcode, want) << name;
  return l.answers;
}

TEST(DnsIndex, ClusterIpsByFamilyAndCaseInsensitive) {
  DnsIndex idx = Index();
  EXPECT_EQ(Answers(idx, "web.default.svc.cluster.local.", LDNS_RR_TYPE_A, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"web.default.svc.cluster.local.", LDNS_RR_TYPE_A, "10.96.0.10"}}));
  EXPECT_EQ(Answers(idx, "WEB.Default.SVC.cluster.LOCAL", LDNS_RR_TYPE_AAAA, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"web.default.svc.cluster.local.", LDNS_RR_TYPE_AAAA, "fd00:96::10"}}));
  // A name that exists without records of the type: NODATA.
  EXPECT_TRUE(Answers(idx, "web.default.svc.cluster.local", LDNS_RR_TYPE_MX, DnsRcode::kNoError).empty());
}

TEST(DnsIndex, NxdomainInsideTheDomainForwardOutside) {
  DnsIndex idx = Index();
  Answers(idx, "nope.default.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
  Answers(idx, "web.other.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
  Answers(idx, "web.default.pod.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
  Answers(idx, "x.web.default.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);  // not headless
  // Empty non-terminals: the domain, svc and a namespace with services.
  Answers(idx, "cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNoError);
  Answers(idx, "default.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNoError);
  Answers(idx, "empty.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
  EXPECT_TRUE(idx.Lookup("example.com.", LDNS_RR_TYPE_A).forward);
  EXPECT_TRUE(idx.Lookup("notcluster.local", LDNS_RR_TYPE_A).forward);
  EXPECT_TRUE(idx.Lookup("9.9.9.9.in-addr.arpa", LDNS_RR_TYPE_PTR).forward);
}

TEST(DnsIndex, PtrForClusterIpsAndNamedHeadlessEndpoints) {
  DnsIndex idx = Index();
  EXPECT_EQ(Answers(idx, "10.0.96.10.IN-ADDR.ARPA.", LDNS_RR_TYPE_PTR, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"10.0.96.10.in-addr.arpa.", LDNS_RR_TYPE_PTR, "web.default.svc.cluster.local."}}));
  const std::string v6 = A("fd00:96::10").ReverseName();
  EXPECT_EQ(v6, "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa");
  EXPECT_EQ(Answers(idx, v6, LDNS_RR_TYPE_PTR, DnsRcode::kNoError).at(0).data, "web.default.svc.cluster.local.");
  EXPECT_EQ(Answers(idx, "1.0.1.10.in-addr.arpa", LDNS_RR_TYPE_PTR, DnsRcode::kNoError).at(0).data,
            "db-0.db.shop.svc.cluster.local.");
  // Gone with the service.
  idx.Update("default", "web", std::nullopt);
  EXPECT_TRUE(idx.Lookup("10.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR).forward);
  Answers(idx, "web.default.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
  Answers(idx, "default.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNoError);  // ext is still there
}

TEST(DnsIndex, SrvForNamedPorts) {
  DnsIndex idx = Index();
  EXPECT_EQ(Answers(idx, "_http._tcp.web.default.svc.cluster.local", LDNS_RR_TYPE_SRV, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"_http._tcp.web.default.svc.cluster.local.", LDNS_RR_TYPE_SRV,
                                     "0 100 80 web.default.svc.cluster.local."}}));
  Answers(idx, "_http._udp.web.default.svc.cluster.local", LDNS_RR_TYPE_SRV, DnsRcode::kNxDomain);
  Answers(idx, "_dns._udp.web.default.svc.cluster.local", LDNS_RR_TYPE_SRV, DnsRcode::kNxDomain);
  EXPECT_EQ(Answers(idx, "_pg._tcp.db.shop.svc.cluster.local", LDNS_RR_TYPE_SRV, DnsRcode::kNoError),
            (std::vector<DnsRecord>{
                {"_pg._tcp.db.shop.svc.cluster.local.", LDNS_RR_TYPE_SRV, "0 50 5432 10-1-0-2.db.shop.svc.cluster.local."},
                {"_pg._tcp.db.shop.svc.cluster.local.", LDNS_RR_TYPE_SRV, "0 50 5432 db-0.db.shop.svc.cluster.local."}}));
}

TEST(DnsIndex, HeadlessAnswersWithEndpoints) {
  DnsIndex idx = Index();
  EXPECT_EQ(Answers(idx, "db.shop.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"db.shop.svc.cluster.local.", LDNS_RR_TYPE_A, "10.1.0.1"},
                                    {"db.shop.svc.cluster.local.", LDNS_RR_TYPE_A, "10.1.0.2"}}));
  EXPECT_EQ(Answers(idx, "DB-0.db.shop.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"db-0.db.shop.svc.cluster.local.", LDNS_RR_TYPE_A, "10.1.0.1"}}));
  EXPECT_EQ(Answers(idx, "10-1-0-2.db.shop.svc.cluster.local", LDNS_RR_TYPE_AAAA, DnsRcode::kNoError),
            (std::vector<DnsRecord>{{"10-1-0-2.db.shop.svc.cluster.local.", LDNS_RR_TYPE_AAAA, "fd00::2"}}));
  Answers(idx, "db-1.db.shop.svc.cluster.local", LDNS_RR_TYPE_A, DnsRcode::kNxDomain);
}

TEST(DnsIndex, ExternalNameIsACnameToChase) {
  DnsIndex idx = Index();
  DnsLookup l = idx.Lookup("ext.default.svc.cluster.local", LDNS_RR_TYPE_A);
  EXPECT_EQ(l.answers, (std::vector<DnsRecord>{{"ext.default.svc.cluster.local.", LDNS_RR_TYPE_CNAME, "example.com."}}));
  EXPECT_EQ(l.chase, "example.com.");
  EXPECT_EQ(idx.Lookup("ext.default.svc.cluster.local", LDNS_RR_TYPE_CNAME).chase, "");
}

// ---- the wire ----------------------------------------------------------

std::string Query(const std::string& name, ldns_rr_type type, int edns_size = 0, uint16_t id = 4242) {
  ldns_pkt* q = ldns_pkt_query_new(ldns_dname_new_frm_str(name.c_str()), type, LDNS_RR_CLASS_IN, LDNS_RD);
  ldns_pkt_set_id(q, id);
  if (edns_size > 0) ldns_pkt_set_edns_udp_size(q, static_cast<uint16_t>(edns_size));
  uint8_t* buf = nullptr;
  size_t size = 0;
  EXPECT_EQ(ldns_pkt2wire(&buf, q, &size), LDNS_STATUS_OK);
  std::string out(reinterpret_cast<char*>(buf), size);
  free(buf);
  ldns_pkt_free(q);
  return out;
}

struct Parsed {
  ldns_pkt* p = nullptr;
  explicit Parsed(const std::string& wire) {
    EXPECT_EQ(ldns_wire2pkt(&p, reinterpret_cast<const uint8_t*>(wire.data()), wire.size()), LDNS_STATUS_OK);
  }
  ~Parsed() { ldns_pkt_free(p); }
  size_t answers() const { return ldns_rr_list_rr_count(ldns_pkt_answer(p)); }
};

DnsIndex ManyEndpoints(int n) {
  DnsIndex idx("cluster.local");
  DnsService s{"default", "many", {}, "", {}, {}};
  for (int i = 0; i < n; ++i) {
    s.endpoints.push_back({"", {A(("10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1)).c_str())}});
  }
  idx.Update("default", "many", s);
  return idx;
}

TEST(AnswerQuery, AnswersWithIdQuestionAndAuthority) {
  DnsIndex idx = Index();
  DnsReply r = AnswerQuery(idx, Query("Web.default.svc.cluster.local.", LDNS_RR_TYPE_A), false, {}, false);
  ASSERT_FALSE(r.forward);
  Parsed p(r.wire);
  EXPECT_EQ(ldns_pkt_id(p.p), 4242);
  EXPECT_TRUE(ldns_pkt_qr(p.p));
  EXPECT_TRUE(ldns_pkt_aa(p.p));
  EXPECT_EQ(ldns_pkt_get_rcode(p.p), LDNS_RCODE_NOERROR);
  ASSERT_EQ(p.answers(), 1u);
  EXPECT_EQ(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p.p), 0)), 5u);
  EXPECT_EQ(ldns_rr_list_rr_count(ldns_pkt_authority(p.p)), 0u);
  r = AnswerQuery(idx, Query("nope.default.svc.cluster.local.", LDNS_RR_TYPE_A), false, {}, false);
  EXPECT_EQ(r.rcode, DnsRcode::kNxDomain);
  Parsed nx(r.wire);
  EXPECT_EQ(ldns_pkt_get_rcode(nx.p), LDNS_RCODE_NXDOMAIN);
  // The domain's SOA in the authority section, for negative caching.
  ASSERT_EQ(ldns_rr_list_rr_count(ldns_pkt_authority(nx.p)), 1u);
  const ldns_rr* soa = ldns_rr_list_rr(ldns_pkt_authority(nx.p), 0);
  EXPECT_EQ(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
  char* owner = ldns_rdf2str(ldns_rr_owner(soa));
  EXPECT_EQ(std::string(owner), "cluster.local.");
  free(owner);
  // NODATA too.
  Parsed nodata(AnswerQuery(idx, Query("web.default.svc.cluster.local.", LDNS_RR_TYPE_MX), false, {}, false).wire);
  EXPECT_EQ(ldns_pkt_get_rcode(nodata.p), LDNS_RCODE_NOERROR);
  EXPECT_EQ(ldns_rr_list_rr_count(ldns_pkt_authority(nodata.p)), 1u);
}

TEST(AnswerQuery, OutsideTheDomainRefusedWithoutUpstreamForwardedWithOne) {
  DnsIndex idx = Index();
  const std::string q = Query("example.org.", LDNS_RR_TYPE_A);
  DnsReply r = AnswerQuery(idx, q, false, {}, false);
  EXPECT_EQ(r.rcode, DnsRcode::kRefused);
  r = AnswerQuery(idx, q, false, {}, true);
  EXPECT_TRUE(r.forward);
  EXPECT_EQ(r.upstream_query, q);
  // No answer from upstream: SERVFAIL.
  DnsReply f = FinishForward(q, r, std::nullopt, 5, false, {});
  EXPECT_EQ(f.rcode, DnsRcode::kServFail);
  EXPECT_EQ(ldns_pkt_id(Parsed(f.wire).p), 4242);
}

TEST(AnswerQuery, ExternalNameChasedUpstreamAndJoined) {
  DnsIndex idx = Index();
  const std::string q = Query("ext.default.svc.cluster.local.", LDNS_RR_TYPE_A);
  DnsReply r = AnswerQuery(idx, q, false, {}, true);
  ASSERT_TRUE(r.forward);
  Parsed up_q(r.upstream_query);
  char* target = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(up_q.p), 0)));
  EXPECT_EQ(std::string(target), "example.com.");
  free(target);
  // The upstream's answer.
  ldns_pkt* resp = ldns_pkt_clone(up_q.p);
  ldns_pkt_set_qr(resp, true);
  ldns_rr* rr = nullptr;
  ldns_rr_new_frm_str(&rr, "example.com. 60 IN A 192.0.2.7", 0, nullptr, nullptr);
  ldns_pkt_push_rr(resp, LDNS_SECTION_ANSWER, rr);
  uint8_t* buf = nullptr;
  size_t size = 0;
  ldns_pkt2wire(&buf, resp, &size);
  const std::string resp_wire(reinterpret_cast<char*>(buf), size);
  free(buf);
  ldns_pkt_free(resp);
  DnsReply f = FinishForward(q, r, resp_wire, 5, false, {});
  Parsed p(f.wire);
  ASSERT_EQ(p.answers(), 2u);
  EXPECT_EQ(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(p.p), 0)), LDNS_RR_TYPE_CNAME);
  EXPECT_EQ(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(p.p), 1)), LDNS_RR_TYPE_A);
  // A response with another id is not the answer.
  EXPECT_EQ(FinishForward(q, r, Query("example.com.", LDNS_RR_TYPE_A, 0, 1), 5, false, {}).rcode, DnsRcode::kServFail);
  // Without an upstream, the CNAME alone.
  DnsReply alone = AnswerQuery(idx, q, false, {}, false);
  EXPECT_FALSE(alone.forward);
  EXPECT_EQ(Parsed(alone.wire).answers(), 1u);
  // An external name that is no DNS name (the API does not check it): no
  // record and nothing sent upstream, but an answer.
  idx.Update("default", "ext", DnsService{"default", "ext", {}, "not a name", {}, {}});
  DnsReply bad = AnswerQuery(idx, q, false, {}, true);
  EXPECT_FALSE(bad.forward);
  EXPECT_EQ(bad.rcode, DnsRcode::kNoError);
  EXPECT_EQ(Parsed(bad.wire).answers(), 0u);
}

TEST(AnswerQuery, TruncatedOverUdpWithoutEdnsWholeOverTcpAndCompressed) {
  DnsIndex idx = ManyEndpoints(100);
  const std::string q = Query("many.default.svc.cluster.local.", LDNS_RR_TYPE_A);
  DnsReply udp = AnswerQuery(idx, q, false, {}, false);
  EXPECT_LE(udp.wire.size(), 512u);
  Parsed pu(udp.wire);
  EXPECT_TRUE(ldns_pkt_tc(pu.p));
  EXPECT_EQ(pu.answers(), 0u);
  DnsReply tcp = AnswerQuery(idx, q, true, {}, false);
  Parsed pt(tcp.wire);
  EXPECT_FALSE(ldns_pkt_tc(pt.p));
  EXPECT_EQ(pt.answers(), 100u);
  // Owner names compressed: 100 A records of 16 bytes each, not 48.
  EXPECT_LT(tcp.wire.size(), 12u + 36u + 100u * 16u + 16u);
  // EDNS0 with a 4096-byte buffer: capped at --dns-max-udp-size (1232): 100 fit in 1648? no: truncated.
  DnsReply edns = AnswerQuery(idx, Query("many.default.svc.cluster.local.", LDNS_RR_TYPE_A, 4096), false, {}, false);
  EXPECT_LE(edns.wire.size(), 1232u);
  Parsed pe(edns.wire);
  EXPECT_TRUE(ldns_pkt_tc(pe.p));
  EXPECT_EQ(ldns_pkt_edns_udp_size(pe.p), 1232);
  // 60 fit in 1232 with EDNS0, not in 512 without.
  DnsIndex some = ManyEndpoints(60);
  Parsed fits(AnswerQuery(some, Query("many.default.svc.cluster.local.", LDNS_RR_TYPE_A, 4096), false, {}, false).wire);
  EXPECT_FALSE(ldns_pkt_tc(fits.p));
  EXPECT_EQ(fits.answers(), 60u);
}

TEST(AnswerQuery, GarbageAndResponsesAndOversizedQueries) {
  DnsIndex idx = Index();
  EXPECT_TRUE(AnswerQuery(idx, "abc", false, {}, true).wire.empty());  // shorter than a header: dropped
  std::string junk(40, '\x7f');
  junk[2] = 0;  // a query's flags
  DnsReply r = AnswerQuery(idx, junk, false, {}, true);
  EXPECT_EQ(r.rcode, DnsRcode::kFormErr);
  EXPECT_FALSE(r.forward);
  std::string response = Query("web.default.svc.cluster.local.", LDNS_RR_TYPE_A);
  response[2] = static_cast<char>(response[2] | 0x80);  // QR: never answered (no reflection loops)
  EXPECT_TRUE(AnswerQuery(idx, response, false, {}, true).wire.empty());
  DnsWireLimits small;
  small.max_query_bytes = 20;
  EXPECT_EQ(AnswerQuery(idx, Query("web.default.svc.cluster.local.", LDNS_RR_TYPE_A), false, small, true).rcode,
            DnsRcode::kFormErr);
}

// ---- from the desired state, and a server on loopback -------------------

v1::Resource Res(const std::string& text) {
  v1::Resource r;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &r)) << text;
  return r;
}

TEST(DnsServiceOf, HeadlessReadyEndpointsWithHostnames) {
  State st;
  for (const char* t : {R"(service { metadata { namespace: "shop" name: "db" } spec { ports { name: "pg" port: 5432 } } })",
                        R"(endpoint_slice { metadata { namespace: "shop" name: "db-1" } service_name: "db"
                           endpoints { addresses: "10.1.0.1" hostname: "db-0" }
                           endpoints { addresses: "10.1.0.2" conditions { ready: false } }
                           endpoints { addresses: "10.1.0.1" } })"}) {
    v1::Resource r = Res(t);
    st.objects[KeyOf(r)] = r;
  }
  Desired d(std::move(st));
  std::optional<DnsService> s = DnsServiceOf(d, "shop", "db");
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->headless());
  ASSERT_EQ(s->endpoints.size(), 1u);  // not ready, and the same address twice: left out
  EXPECT_EQ(s->endpoints[0].hostname, "db-0");
  ASSERT_EQ(s->ports.size(), 1u);
  EXPECT_EQ(s->ports[0].proto, "tcp");
  EXPECT_FALSE(DnsServiceOf(d, "shop", "nope").has_value());
}

TEST(DnsServer, AnswersOverUdpOnLoopbackAndSeesUpdates) {
  DnsServerOptions o;
  o.listen = {{"127.0.0.1", 0}};
  absl::StatusOr<std::unique_ptr<DnsServer>> s = DnsServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const int port = (*s)->ports().at(0);
  auto ask = [port](const std::string& q) {
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    pollfd p{fd, POLLIN, 0};
    std::string out(4096, '\0');
    ssize_t n = poll(&p, 1, 5000) == 1 ? recv(fd, out.data(), out.size(), 0) : -1;
    close(fd);
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
  };
  const std::string q = Query("web.default.svc.cluster.local.", LDNS_RR_TYPE_A);
  EXPECT_EQ(ldns_pkt_get_rcode(Parsed(ask(q)).p), LDNS_RCODE_NXDOMAIN);
  (*s)->Update({{{"default", "web"}, DnsService{"default", "web", {A("10.96.0.10")}, "", {}, {}}}}, false);
  EXPECT_EQ(Parsed(ask(q)).answers(), 1u);
  (*s)->Update({}, true);  // a full update without it
  EXPECT_EQ(ldns_pkt_get_rcode(Parsed(ask(q)).p), LDNS_RCODE_NXDOMAIN);
}

// A socket to 127.0.0.1:port (SOCK_DGRAM or SOCK_STREAM, connected).
int Connect(int type, int port) {
  const int fd = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

// What arrives on fd within `ms`: the bytes, "" for an orderly close, or
// "timeout".
std::string Receive(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) != 1) return "timeout";
  std::string out(65536, '\0');
  const ssize_t n = recv(fd, out.data(), out.size(), 0);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string Framed(const std::string& q) {
  return std::string(1, static_cast<char>(q.size() >> 8)) + static_cast<char>(q.size() & 0xff) + q;
}

TEST(DnsServer, TcpConnectionsAreCountedAndClosedWhenIdle) {
  DnsServerOptions o;
  o.listen = {{"127.0.0.1", 0}};
  o.max_tcp_connections = 2;
  o.tcp_idle_timeout = absl::Milliseconds(300);
  absl::StatusOr<std::unique_ptr<DnsServer>> s = DnsServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const int port = (*s)->ports().at(0);
  (*s)->Update({{{"default", "web"}, DnsService{"default", "web", {A("10.96.0.10")}, "", {}, {}}}}, false);
  const int a = Connect(SOCK_STREAM, port), b = Connect(SOCK_STREAM, port);
  const std::string q = Framed(Query("web.default.svc.cluster.local.", LDNS_RR_TYPE_A));
  ASSERT_EQ(send(a, q.data(), q.size(), 0), static_cast<ssize_t>(q.size()));
  const std::string answer = Receive(a, 5000);
  ASSERT_GT(answer.size(), 2u);
  EXPECT_EQ(Parsed(answer.substr(2)).answers(), 1u);
  ASSERT_EQ(send(b, q.data(), q.size(), 0), static_cast<ssize_t>(q.size()));
  ASSERT_GT(Receive(b, 5000).size(), 2u);
  // A third connection is over the limit: closed at once.
  const int c = Connect(SOCK_STREAM, port);
  EXPECT_EQ(Receive(c, 5000), "");
  // A length larger than any query: closed.
  const std::string big("\x10\x00", 2);
  ASSERT_EQ(send(b, big.data(), big.size(), 0), 2);
  EXPECT_EQ(Receive(b, 5000), "");
  // The idle one goes after --dns-tcp-idle-timeout.
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(Receive(a, 5000), "");
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  for (int fd : {a, b, c}) close(fd);
}

TEST(DnsServer, ForwardsAreBoundedAndTimeOut) {
  // An upstream that never answers.
  const int up = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in ua{};
  ua.sin_family = AF_INET;
  ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(up, reinterpret_cast<sockaddr*>(&ua), sizeof ua), 0);
  socklen_t len = sizeof ua;
  getsockname(up, reinterpret_cast<sockaddr*>(&ua), &len);
  DnsServerOptions o;
  o.listen = {{"127.0.0.1", 0}};
  o.upstreams = {{"127.0.0.1", ntohs(ua.sin_port)}};
  o.max_forwards = 1;
  o.forward_timeout = absl::Milliseconds(300);
  absl::StatusOr<std::unique_ptr<DnsServer>> s = DnsServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const int c = Connect(SOCK_DGRAM, (*s)->ports().at(0));
  const std::string q1 = Query("one.example.org.", LDNS_RR_TYPE_A, 0, 1);
  const std::string q2 = Query("two.example.org.", LDNS_RR_TYPE_A, 0, 2);
  ASSERT_EQ(send(c, q1.data(), q1.size(), 0), static_cast<ssize_t>(q1.size()));
  EXPECT_EQ(Receive(up, 5000), q1);  // forwarded as it is
  ASSERT_EQ(send(c, q2.data(), q2.size(), 0), static_cast<ssize_t>(q2.size()));
  // The second is over --dns-max-forwards: SERVFAIL at once; the first when its time is up.
  std::string got = Receive(c, 5000);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(ldns_pkt_id(Parsed(got).p), 2);
  EXPECT_EQ(ldns_pkt_get_rcode(Parsed(got).p), LDNS_RCODE_SERVFAIL);
  got = Receive(c, 5000);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(ldns_pkt_id(Parsed(got).p), 1);
  EXPECT_EQ(ldns_pkt_get_rcode(Parsed(got).p), LDNS_RCODE_SERVFAIL);
  close(c);
  close(up);
}

TEST(ParseDnsHostPort, Forms) {
  EXPECT_EQ(ParseDnsHostPort("10.0.0.1:5353")->port, 5353);
  EXPECT_EQ(ParseDnsHostPort("10.0.0.1")->port, 53);
  EXPECT_EQ(ParseDnsHostPort("[fd00::1]:54")->host, "fd00::1");
  EXPECT_FALSE(ParseDnsHostPort("fd00::1:54").ok());
  EXPECT_FALSE(ParseDnsHostPort("dns.example:53").ok());
  EXPECT_FALSE(ParseDnsHostPort("10.0.0.1:70000").ok());
}

}  // namespace
}  // namespace nftproxy::server
