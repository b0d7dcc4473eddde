// The seam between the server and the kernel. The server owns the desired
// state; it hands the dataplane a complete Model once, then only the
// services a write changed. The dataplane makes the kernel match atomically,
// with work proportional to the change. Tests of the server use a fake.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/model.h"
#include "dataplane/trace.h"

namespace nftproxy::dp {

struct ApplyResult {
  bool changed = false;   // false: the kernel already matched, nothing was sent
  bool full = false;      // the whole table was replaced
  bool adopted = false;   // the table a previous run left was adopted (changed: only the difference)
  uint32_t messages = 0;  // netlink messages in the batch
  int flows_deleted = 0;  // UDP conntrack entries of removed endpoints
  // Where the time went: compiling the services, building the netlink
  // batch, and the kernel's processing of it (sendmsg to the ack).
  absl::Duration compile, batch, kernel;
};

// Services to add or replace whole, and services to remove (by Key()).
// Removing a service the dataplane does not have is not an error.
struct ModelChange {
  std::vector<Service> upserts;
  std::vector<std::string> removes;
};

// A kernel error caused by one service's objects names that service: the
// message says "service ns/name ..." and the status carries its key
// "ns/name" as a payload, so the server can point at the resource.
inline constexpr char kServiceErrorPayload[] = "nftproxy.dataplane/service";
// `s` with `owner` ("service ns/name", see ServiceOwner) as its service;
// unchanged for any other owner.
absl::Status BlameService(absl::Status s, const std::string& owner);
// The key "ns/name" of the service an error names; nullopt if none.
std::optional<std::string> ServiceOfError(const absl::Status& s);

// New connections of one service port, counted in the kernel by its named
// counter object (NodeSettings::counters). The counter sits in a nat chain,
// which sees only the first packet of a connection: its packets are the
// port's new connections since the counter was created (when the service
// port appeared, or at the last full replacement of the table).
struct EndpointConnections {
  IpAddr addr;
  uint16_t port = 0;
  uint64_t connections = 0;
};
struct PortConnections {
  std::string ns, service;
  L4Proto proto = L4Proto::kTcp;
  uint16_t port = 0;
  uint64_t connections = 0;
  // With endpoint counters: per endpoint, sorted by address and port.
  std::vector<EndpointConnections> endpoints;
};

// What was last committed, detached from the dataplane: it renders as nft
// text on any thread, however the dataplane changes meanwhile.
class InstalledRuleset {
 public:
  virtual ~InstalledRuleset() = default;
  // Calls `sink` with consecutive pieces of the text (about 1 MiB each, whole
  // lines) until the text ends or `sink` returns false.
  virtual void Render(const std::function<bool(absl::string_view)>& sink) const = 0;
  // Where the kernel's table differs from it, one line per object (see
  // KernelDifferences in adopt.h); empty when they are the same.
  // Unimplemented where there is no kernel.
  virtual absl::StatusOr<std::vector<std::string>> KernelDifferences() const {
    return absl::UnimplementedError("this dataplane has no kernel to compare with");
  }
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // Makes the kernel match `model`, all or nothing: node settings and every
  // service. On error the kernel and the dataplane's idea of it are
  // unchanged, and the message names the service that caused it where the
  // kernel says which message failed.
  virtual absl::Status Apply(const Model& model, ApplyResult* result) = 0;

  // Changes only the listed services, all or nothing, as Apply does. Only
  // after a successful Apply (FailedPrecondition before).
  virtual absl::Status Update(const ModelChange& change, ApplyResult* result) = 0;

  // The nft text of what was last committed ("" before the first commit).
  virtual std::string Installed() const = 0;
  // The same with only the objects of service `key` ("ns/name"): its chains
  // and its map and set elements, in the full table's layout; "" before the
  // first commit. A service the dataplane does not hold gives the fixed
  // table only.
  virtual std::string InstalledService(const std::string& key) const = 0;
  // A copy of what was last committed, to render later; null before the
  // first commit. Costs a copy of the installed model.
  virtual std::unique_ptr<InstalledRuleset> Snapshot() const = 0;

  // "inet <name>".
  virtual std::string Table() const = 0;

  // Writes again, with one full commit, everything last committed: the
  // table is replaced whole by what this dataplane holds (after drift).
  // FailedPrecondition before the first commit.
  virtual absl::Status Reinstall(ApplyResult* result) {
    return absl::UnimplementedError("this dataplane cannot reinstall its table");
  }

  // Calls `drift(what)` (on another thread) whenever something other than
  // this dataplane changes its table, or may have (see drift_monitor.h).
  // Unimplemented where there is no kernel to watch. A null `drift` stops
  // watching (it returns once no call of the old one is under way).
  virtual absl::Status WatchDrift(std::function<void(const std::string& what)> drift) {
    return absl::UnimplementedError("this dataplane cannot watch its table");
  }

  // What `nftproxy trace` needs to name tickets and endpoints (trace.h):
  // the installed backends maps and service-port indexes, copied.
  // Unimplemented where there is no kernel to trace; FailedPrecondition
  // before the first commit.
  virtual absl::StatusOr<TraceNames> NamesForTrace() const {
    return absl::UnimplementedError("this dataplane has no kernel to trace");
  }

  // The kernel's connection counters (per service port, and per endpoint
  // with endpoint counters), the committed counter objects each read by
  // name on a socket of its own, sorted by namespace, service, protocol and
  // port. Safe on any thread without the caller's write lock. Empty when counters are off; Unimplemented where there
  // is no kernel.
  // `keep(namespace, service)`, when given, says which services' counters
  // to read (the others are not asked for).
  using ServiceFilter = std::function<bool(absl::string_view ns, absl::string_view service)>;
  virtual absl::StatusOr<std::vector<PortConnections>> ReadCounters(const ServiceFilter& keep) const {
    return absl::UnimplementedError("this dataplane has no kernel counters");
  }
};

}  // namespace nftproxy::dp
