#include "server/dns_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <list>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/resource.h"
#include "server/http_server.h"

namespace nftproxy::server {

std::optional<DnsService> DnsServiceOf(const Desired& d, const std::string& ns, const std::string& name) {
  const v1::Resource* res = d.Find(Key{v1::SERVICE, ns, name});
  if (res == nullptr) return std::nullopt;
  const v1::ServiceSpec& spec = res->service().spec();
  DnsService s;
  s.ns = ns;
  s.name = name;
  if (spec.type() == v1::ServiceSpec::EXTERNAL_NAME) {
    s.external_name = spec.external_name();
    return s;
  }
  for (const std::string& ip : spec.cluster_ips()) {
    if (auto a = DnsAddr::Parse(ip)) s.cluster_ips.push_back(*a);
  }
  auto proto = [](v1::Protocol p) { return p == v1::UDP ? "udp" : p == v1::SCTP ? "sctp" : "tcp"; };
  for (const v1::ServicePort& p : spec.ports()) {
    s.ports.push_back(DnsPort{p.name(), proto(p.protocol()), static_cast<uint16_t>(p.port())});
  }
  if (!s.headless()) return s;
  std::set<DnsAddr> seen;
  auto add = [&](const google::protobuf::RepeatedPtrField<std::string>& addrs, const v1::EndpointConditions& c,
                 const std::string& hostname) {
    if (!EndpointReady(c)) return;
    DnsEndpoint e;
    e.hostname = hostname;
    for (const std::string& text : addrs) {
      if (auto a = DnsAddr::Parse(text); a && seen.insert(*a).second) e.addresses.push_back(*a);
    }
    if (!e.addresses.empty()) s.endpoints.push_back(std::move(e));
  };
  if (!spec.selector().empty()) {
    const State& state = d.state();
    for (auto it = state.objects.lower_bound(Key{v1::WORKLOAD, ns, ""});
         it != state.objects.end() && it->first.kind == v1::WORKLOAD && it->first.ns == ns; ++it) {
      const v1::Workload& w = it->second.workload();
      if (SelectorMatches(spec.selector(), w.metadata().labels())) add(w.addresses(), w.conditions(), "");
    }
  } else {
    for (const std::string& slice : d.SlicesOf(ns, name)) {
      for (const v1::Endpoint& e : d.Find(Key{v1::ENDPOINT_SLICE, ns, slice})->endpoint_slice().endpoints()) {
        add(e.addresses(), e.conditions(), e.hostname());
      }
    }
  }
  return s;
}

absl::StatusOr<DnsHostPort> ParseDnsHostPort(absl::string_view text) {
  DnsHostPort hp;
  absl::string_view host = text, port;
  if (absl::ConsumePrefix(&host, "[")) {
    const size_t end = host.find(']');
    if (end == absl::string_view::npos) return absl::InvalidArgumentError("a [ without ]");
    port = host.substr(end + 1);
    host = host.substr(0, end);
    if (!port.empty() && !absl::ConsumePrefix(&port, ":")) return absl::InvalidArgumentError("expected HOST:PORT");
  } else if (size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    if (host.find(':') != colon) return absl::InvalidArgumentError("an IPv6 address needs brackets: [ADDR]:PORT");
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  hp.host = std::string(host);
  if (hp.host.empty() || !DnsAddr::Parse(hp.host)) {
    return absl::InvalidArgumentError("expected an IP address and a port: HOST:PORT or [V6]:PORT");
  }
  if (!port.empty() && (!absl::SimpleAtoi(port, &hp.port) || hp.port < 0 || hp.port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("bad port \"", port, "\" (0-65535)"));
  }
  return hp;
}

std::vector<DnsHostPort> ResolvConfNameservers(const std::string& path, const std::vector<DnsHostPort>& skip) {
  std::vector<DnsHostPort> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> words = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() < 2 || words[0] != "nameserver") continue;
    const std::string host(words[1].substr(0, words[1].find('%')));
    if (!DnsAddr::Parse(host)) continue;
    bool self = false;
    for (const DnsHostPort& s : skip) self |= s.port == 53 && *DnsAddr::Parse(s.host) == *DnsAddr::Parse(host);
    if (!self) out.push_back(DnsHostPort{host, 53});
  }
  return out;
}

namespace {

struct Peer {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// One query sent upstream: who to answer and how.
struct Forward {
  int fd = -1;
  absl::Time deadline;
  std::string query;  // the client's
  DnsReply reply;     // upstream_query, prefix
  bool tcp = false;
  int udp_fd = -1;  // the listening socket the query came on (UDP)
  Peer peer;
  uint64_t conn = 0;  // the TCP connection's id
};

struct TcpConn {
  int fd = -1;
  std::string in, out;
  absl::Time last;
  int forwards = 0;
};

// A socket connected to `up`, for one query; -1 on error.
int UpstreamSocket(const DnsHostPort& up) {
  sockaddr_storage addr{};
  socklen_t len;
  const std::optional<DnsAddr> a = DnsAddr::Parse(up.host);
  if (!a) return -1;
  if (a->v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&addr);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(up.port));
    memcpy(&s6->sin6_addr, a->bytes.data(), 16);
    len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&addr);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(up.port));
    memcpy(&s4->sin_addr, a->bytes.data(), 4);
    len = sizeof(sockaddr_in);
  }
  const int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage bound = {};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  return bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

constexpr size_t kMaxTcpOutput = 1 << 20;  // a client that does not read is closed

}  // namespace

struct DnsServer::Impl {
  int wake = -1;
  std::vector<int> udp, tcp;
  std::map<uint64_t, TcpConn> conns;
  uint64_t next_conn = 1;
  std::list<Forward> forwards;
  size_t next_upstream = 0;
  ~Impl() {
    for (int fd : udp) close(fd);
    for (int fd : tcp) close(fd);
    for (auto& [id, c] : conns) close(c.fd);
    for (Forward& f : forwards) close(f.fd);
    if (wake >= 0) close(wake);
  }
};

absl::StatusOr<std::unique_ptr<DnsServer>> DnsServer::Start(DnsServerOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->wake < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  std::vector<int> ports;
  for (DnsHostPort& hp : options.listen) {
    absl::StatusOr<int> u = BoundSocket(hp.host, hp.port, SOCK_DGRAM);
    if (!u.ok()) return u.status();
    impl->udp.push_back(*u);
    const int port = BoundPort(*u);
    absl::StatusOr<int> t = BoundSocket(hp.host, port, SOCK_STREAM);
    if (!t.ok()) return t.status();
    impl->tcp.push_back(*t);
    ports.push_back(port);
  }
  std::unique_ptr<DnsServer> s(new DnsServer(std::move(options), std::move(impl)));
  s->ports_ = std::move(ports);
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

DnsServer::DnsServer(DnsServerOptions options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)), index_(options_.domain, options_.ttl) {
  if (options_.metrics != nullptr) {
    queries_ = options_.metrics->Counter("nftproxy_dns_queries_total",
                                         "DNS queries answered by the built-in responder, by type and rcode.",
                                         {"type", "rcode"});
  }
}

DnsServer::~DnsServer() {
  const uint64_t one = 1;
  (void)!write(impl_->wake, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void DnsServer::Update(const DnsChanges& changes, bool full) {
  absl::MutexLock lock(&mu_);
  if (full) index_.Clear();
  for (const auto& [key, svc] : changes) index_.Update(key.first, key.second, svc);
}

DnsReply DnsServer::Answer(absl::string_view query, bool tcp) {
  absl::ReaderMutexLock lock(&mu_);
  return AnswerQuery(index_, query, tcp, options_.limits, !options_.upstreams.empty());
}

void DnsServer::Run() {
  Impl& im = *impl_;
  std::string buf(65536, '\0');
  auto count = [this](const DnsReply& r) {
    if (queries_ != nullptr && !r.wire.empty()) queries_->Add({DnsTypeName(r.qtype), DnsRcodeName(r.rcode)});
  };
  auto send_tcp = [&](uint64_t id, const std::string& wire) {
    auto it = im.conns.find(id);
    if (it == im.conns.end() || wire.empty()) return;
    const uint16_t n = htons(static_cast<uint16_t>(wire.size()));
    it->second.out.append(reinterpret_cast<const char*>(&n), 2);
    it->second.out += wire;
  };
  // A query from a client: answered, or sent upstream.
  auto handle = [&](absl::string_view query, bool tcp, int udp_fd, const Peer& peer, uint64_t conn) {
    DnsReply r = Answer(query, tcp);
    if (r.forward) {
      int fd = -1;
      if (im.forwards.size() < options_.max_forwards) {
        fd = UpstreamSocket(options_.upstreams[im.next_upstream++ % options_.upstreams.size()]);
      }
      if (fd >= 0 && send(fd, r.upstream_query.data(), r.upstream_query.size(), 0) >= 0) {
        Forward f{fd, absl::Now() + options_.forward_timeout, std::string(query), std::move(r), tcp, udp_fd, peer,
                  conn};
        im.forwards.push_back(std::move(f));
        if (tcp) im.conns[conn].forwards++;
        return;
      }
      if (fd >= 0) close(fd);
      r = FinishForward(query, r, std::nullopt, options_.ttl, tcp, options_.limits);
    }
    count(r);
    if (tcp) {
      send_tcp(conn, r.wire);
    } else if (!r.wire.empty()) {
      sendto(udp_fd, r.wire.data(), r.wire.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&peer.addr),
             peer.len);
    }
  };
  auto finish = [&](std::list<Forward>::iterator it, std::optional<absl::string_view> response) {
    DnsReply r = FinishForward(it->query, it->reply, response, options_.ttl, it->tcp, options_.limits);
    count(r);
    if (it->tcp) {
      send_tcp(it->conn, r.wire);
      if (auto c = im.conns.find(it->conn); c != im.conns.end()) c->second.forwards--;
    } else if (!r.wire.empty()) {
      sendto(it->udp_fd, r.wire.data(), r.wire.size(), MSG_DONTWAIT,
             reinterpret_cast<const sockaddr*>(&it->peer.addr), it->peer.len);
    }
    close(it->fd);
    return im.forwards.erase(it);
  };
  std::vector<pollfd> fds;
  std::vector<uint64_t> conn_ids;
  for (;;) {
    fds.clear();
    conn_ids.clear();
    fds.push_back({im.wake, POLLIN, 0});
    for (int fd : im.udp) fds.push_back({fd, POLLIN, 0});
    for (int fd : im.tcp) fds.push_back({fd, static_cast<short>(POLLIN), 0});
    const size_t conn_start = fds.size();
    for (auto& [id, c] : im.conns) {
      short ev = c.out.size() < kMaxTcpOutput ? POLLIN : 0;
      if (!c.out.empty()) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
      conn_ids.push_back(id);
    }
    const size_t fwd_start = fds.size();
    for (const Forward& f : im.forwards) fds.push_back({f.fd, POLLIN, 0});
    const absl::Time now = absl::Now();
    absl::Time next = now + absl::Seconds(1);
    for (const Forward& f : im.forwards) next = std::min(next, f.deadline);
    const int timeout = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - now)) + 1);
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      log::Error("dns: poll failed", {{"error", strerror(errno)}});
      return;
    }
    if (fds[0].revents != 0) return;  // stopping
    size_t i = 1;
    for (int fd : im.udp) {
      if (fds[i++].revents & POLLIN) {
        // Up to 64 datagrams per socket and round, so TCP is served too.
        for (int k = 0; k < 64; ++k) {
          Peer peer;
          peer.len = sizeof(peer.addr);
          const ssize_t n =
              recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&peer.addr), &peer.len);
          if (n < 0) break;
          handle(absl::string_view(buf.data(), static_cast<size_t>(n)), false, fd, peer, 0);
        }
      }
    }
    for (int fd : im.tcp) {
      if (!(fds[i++].revents & POLLIN)) continue;
      const int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) continue;
      if (im.conns.size() >= options_.max_tcp_connections) {
        close(c);  // over --dns-max-tcp-connections
        continue;
      }
      im.conns[im.next_conn++] = TcpConn{c, "", "", absl::Now(), 0};
    }
    // TCP connections.
    for (size_t k = 0; k < conn_ids.size(); ++k) {
      const short rev = fds[conn_start + k].revents;
      auto it = im.conns.find(conn_ids[k]);
      if (it == im.conns.end()) continue;
      TcpConn& c = it->second;
      bool dead = (rev & (POLLERR | POLLNVAL)) != 0;
      if (!dead && (rev & (POLLIN | POLLHUP))) {
        const ssize_t n = recv(c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n <= 0) {
          dead = n == 0 || (errno != EAGAIN && errno != EINTR);
        } else {
          c.last = absl::Now();
          c.in.append(buf.data(), static_cast<size_t>(n));
          while (c.in.size() >= 2) {
            const size_t len = (static_cast<uint8_t>(c.in[0]) << 8) | static_cast<uint8_t>(c.in[1]);
            if (len > options_.limits.max_query_bytes) {
              dead = true;  // larger than any query we take
              break;
            }
            if (c.in.size() < 2 + len) break;
            const std::string q = c.in.substr(2, len);
            c.in.erase(0, 2 + len);
            handle(q, true, -1, Peer{}, conn_ids[k]);
          }
        }
      }
      if (!dead && (rev & POLLOUT) && !c.out.empty()) {
        const ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          c.out.erase(0, static_cast<size_t>(n));
          c.last = absl::Now();
        } else if (errno != EAGAIN && errno != EINTR) {
          dead = true;
        }
      }
      if (!dead && c.forwards == 0 && absl::Now() - c.last > options_.tcp_idle_timeout) dead = true;
      if (dead) {
        close(c.fd);
        im.conns.erase(it);
      }
    }
    // Upstream answers and timeouts.
    size_t k = fwd_start;
    const absl::Time t = absl::Now();
    for (auto it = im.forwards.begin(); it != im.forwards.end();) {
      const short rev = k < fds.size() ? fds[k++].revents : 0;
      if (rev & POLLIN) {
        const ssize_t n = recv(it->fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
          it = finish(it, absl::string_view(buf.data(), static_cast<size_t>(n)));
          continue;
        }
      }
      if (rev & POLLERR || t >= it->deadline) {
        it = finish(it, std::nullopt);
        continue;
      }
      ++it;
    }
  }
}

}  // namespace nftproxy::server
