// Health-check node ports, as kube-proxy's: every service with
// externalTrafficPolicy LOCAL and a healthCheckNodePort gets an HTTP
// listener on that port of the node (the wildcard address of each family)
// that answers any GET with 200 when this node has ready local endpoints for
// the service and the server is healthy, 503 otherwise, and a JSON body
// {"service": {"namespace": ..., "name": ...}, "localEndpoints": N,
//  "serviceProxyHealthy": true}. A load balancer sends traffic only to nodes
// that answer 200.
//
// The write engine changes the set within each write (HealthPortSink):
// Prepare before the kernel commit opens the new ports (a port that cannot
// be bound fails the write, naming the service's spec.healthCheckNodePort),
// Commit after it serves the new counts and closes the removed ports, Abort
// closes what Prepare opened. Every port is served by one HttpServer (one
// thread, bounded connections).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dataplane/ip.h"
#include "server/desired.h"
#include "server/http_server.h"

namespace nftproxy::server {

// One service's health-check node port as this node sees it.
struct HealthPort {
  std::string ns, name;
  uint16_t port = 0;
  // Ready endpoints of the service on this node (--node-name).
  int local_endpoints = 0;
  bool operator==(const HealthPort& o) const {
    return ns == o.ns && name == o.name && port == o.port && local_endpoints == o.local_endpoints;
  }
};

// Service ns/name's health-check node port: a service with
// externalTrafficPolicy LOCAL and a healthCheckNodePort; nullopt otherwise
// (no such service, another policy, no port). Its local endpoints are those
// of its EndpointSlices (or of the workloads its selector matches) whose
// nodeName is `node_name` and that are ready, each address counted once.
std::optional<HealthPort> HealthPortOf(const Desired& d, const std::string& ns, const std::string& name,
                                       const std::string& node_name);

// The answer on a health-check node port (any path).
HttpResponse HealthPortResponse(const HealthPort& p, bool proxy_healthy);

// A write's changes: for each service it may have changed, its port now
// (nullopt: none).
using HealthPortChanges = std::map<std::pair<std::string, std::string>, std::optional<HealthPort>>;

// How a write changes the listeners. `current` and `next` by port.
struct HealthPortPlan {
  std::map<uint16_t, HealthPort> next;
  std::vector<uint16_t> open;   // in next, not in current
  std::vector<uint16_t> close;  // in current, not in next
};
// `full`: `changes` names every service (those it does not name have no port).
HealthPortPlan PlanHealthPorts(const std::map<uint16_t, HealthPort>& current, const HealthPortChanges& changes,
                               bool full);

// What the write engine calls (tests use a fake). Calls come from the
// writer, one write at a time: Prepare, then Commit or Abort.
class HealthPortSink {
 public:
  virtual ~HealthPortSink() = default;
  // Before the kernel commit. On error nothing changed. `best_effort`
  // (start-up with a saved state): a port that cannot be bound is logged
  // and left out instead.
  virtual absl::Status Prepare(const HealthPortChanges& changes, bool full, bool best_effort) = 0;
  // The write committed: serve the new set, close the removed ports.
  virtual void Commit() = 0;
  // The write failed: close the ports Prepare opened.
  virtual void Abort() = 0;
};

// A Binder for `serve --nodeport-addresses`: the port on each of this
// node's addresses (as they are when the port is opened) inside `cidrs`;
// UNAVAILABLE when there is none or one cannot be bound.
std::function<absl::StatusOr<std::vector<int>>(uint16_t port)> BindOnNodeAddresses(std::vector<dp::Cidr> cidrs);

class HealthPorts : public HealthPortSink {
 public:
  // Opens the listening sockets of a port; the default is ListenAnySocket's
  // one (see also BindOnNodeAddresses).
  using Binder = std::function<absl::StatusOr<std::vector<int>>(uint16_t port)>;
  // `healthy`: whether the server is healthy (called on the HTTP thread for
  // each request; must be quick and must not wait for the engine's lock).
  static absl::StatusOr<std::unique_ptr<HealthPorts>> Start(std::function<bool()> healthy, Binder bind = nullptr,
                                                            HttpServerOptions options = {});
  ~HealthPorts() override;

  absl::Status Prepare(const HealthPortChanges& changes, bool full, bool best_effort) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Commit() override ABSL_LOCKS_EXCLUDED(mu_);
  void Abort() override ABSL_LOCKS_EXCLUDED(mu_);

  // What is served now, by port.
  std::map<uint16_t, HealthPort> Serving() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  HealthPorts(std::function<bool()> healthy, Binder bind, std::unique_ptr<HttpServer> server);
  HttpResponse Answer(uint16_t port) const ABSL_LOCKS_EXCLUDED(mu_);

  const std::function<bool()> healthy_;
  const Binder bind_;
  std::unique_ptr<HttpServer> server_;
  mutable absl::Mutex mu_;
  std::map<uint16_t, HealthPort> serving_ ABSL_GUARDED_BY(mu_);
  // Only the writer touches these (one write at a time).
  std::map<uint16_t, std::vector<int>> fds_;     // open and served
  std::map<uint16_t, std::vector<int>> opened_;  // opened by Prepare, not yet served
  std::optional<HealthPortPlan> plan_;
};

}  // namespace nftproxy::server
