// Where the server keeps its desired state between runs, behind an
// interface: the write engine records every committed change through it and
// does not know whether it goes to a local directory (FileStateStore, the
// embedded default) or elsewhere.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/resource.h"
#include "nftproxy/v1/nftproxy.pb.h"

namespace nftproxy::server {

namespace v1 = ::nftproxy::v1;

// Every resource as the API last accepted it, and the revision of the last
// change.
struct State {
  std::map<Key, v1::Resource> objects;
  uint64_t revision = 0;
};

// A change made ready to be saved by StateStore::Prepare and not yet
// visible to a load; its fields mean what the store that made it says.
struct PendingRecord {
  bool snapshot = false;
  uint64_t revision = 0;
  std::string data;
  absl::Status status;  // a failed Prepare: Publish returns it
};

class StateStore {
 public:
  using Pending = PendingRecord;
  virtual ~StateStore() = default;

  // Saving a committed change in two steps, so that the costly part can run
  // while the kernel takes the change, and be dropped if the kernel refuses
  // it. Prepare only reads the store (it may run on another thread while the
  // owner waits, with no other call in between); Publish makes the change
  // the saved state; Abandon forgets it. `keys` are the keys the change
  // touched: each holds in `state` what is now stored, or is absent if it
  // was deleted; `state.revision` is the change's revision.
  virtual Pending Prepare(const State& state, const std::vector<Key>& keys) const = 0;
  virtual absl::Status Publish(Pending pending) = 0;
  virtual void Abandon(const Pending& pending) = 0;
  absl::Status Record(const State& state, const std::vector<Key>& keys) { return Publish(Prepare(state, keys)); }

  // Saves the whole of `state` (a restore, or the first commit of a run).
  virtual absl::Status Snapshot(const State& state) = 0;
};

}  // namespace nftproxy::server
