// The built-in DNS responder (serve --dns-address): UDP and TCP on each
// address, answers from a DnsIndex (server/dns_index.h) that the write
// engine updates within each write (DnsSink::Update runs after the kernel
// commit and before the write's reply), names outside the cluster domain
// forwarded to upstream resolvers. One thread polls every socket.
//
// Bounds: queries over DnsWireLimits::max_query_bytes are FORMERR, UDP
// answers are truncated (TC) to 512 bytes or the client's EDNS0 buffer (at
// most max_udp_answer); at most max_tcp_connections TCP connections (more
// are closed at once), each closed after tcp_idle_timeout without a query;
// at most max_forwards queries upstream at once (more: SERVFAIL), each
// SERVFAIL after forward_timeout.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/desired.h"
#include "server/dns_index.h"
#include "server/metrics.h"

namespace nftproxy::server {

// A write's changes: for each service it may have changed, what DNS serves
// for it now (nullopt: nothing).
using DnsChanges = std::map<std::pair<std::string, std::string>, std::optional<DnsService>>;

// Service ns/name as DNS sees it (nullopt: no such service). Headless
// services list their ready endpoints (from EndpointSlices, or the
// workloads their selector matches), each address once.
std::optional<DnsService> DnsServiceOf(const Desired& d, const std::string& ns, const std::string& name);

// What the write engine calls, one write at a time, after a commit.
class DnsSink {
 public:
  virtual ~DnsSink() = default;
  // `full`: `changes` names every service (the others are gone).
  virtual void Update(const DnsChanges& changes, bool full) = 0;
};

struct DnsHostPort {
  std::string host;
  int port = 53;
};

struct DnsServerOptions {
  std::vector<DnsHostPort> listen;
  std::string domain = "cluster.local";
  uint32_t ttl = 5;
  std::vector<DnsHostPort> upstreams;  // empty: names outside the domain are REFUSED
  DnsWireLimits limits;
  size_t max_tcp_connections = 100;
  absl::Duration tcp_idle_timeout = absl::Seconds(10);
  size_t max_forwards = 256;
  absl::Duration forward_timeout = absl::Seconds(2);
  Registry* metrics = nullptr;  // not owned; null: none
};

class DnsServer : public DnsSink {
 public:
  // Binds every address (UDP and TCP) or fails naming the one that could
  // not be bound; then serves on its own thread.
  static absl::StatusOr<std::unique_ptr<DnsServer>> Start(DnsServerOptions options);
  ~DnsServer() override;

  void Update(const DnsChanges& changes, bool full) override ABSL_LOCKS_EXCLUDED(mu_);
  // The UDP ports bound, in the order of options.listen (port 0 picks one).
  const std::vector<int>& ports() const { return ports_; }

 private:
  struct Impl;
  DnsServer(DnsServerOptions options, std::unique_ptr<Impl> impl);
  void Run();
  DnsReply Answer(absl::string_view query, bool tcp) ABSL_LOCKS_EXCLUDED(mu_);

  const DnsServerOptions options_;
  std::unique_ptr<Impl> impl_;
  std::vector<int> ports_;
  mutable absl::Mutex mu_;
  DnsIndex index_ ABSL_GUARDED_BY(mu_);
  ValueFamily* queries_ = nullptr;
  std::thread thread_;
};

// "HOST:PORT" or "[V6]:PORT" (or "HOST", port 53); InvalidArgument otherwise.
absl::StatusOr<DnsHostPort> ParseDnsHostPort(absl::string_view text);
// The nameservers of a resolv.conf (port 53), skipping `skip` (our own
// listening addresses, so that the responder never forwards to itself).
std::vector<DnsHostPort> ResolvConfNameservers(const std::string& path, const std::vector<DnsHostPort>& skip);

}  // namespace nftproxy::server
