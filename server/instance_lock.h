// One server per table, state directory and socket. A second server started
// on any of them would silently take over (the first one's table rebuilt
// under it, its journal interleaved, its socket unlinked), so `serve` takes
// these locks first and refuses to start (exit 2) naming what is held.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace nftproxy::server {

class InstanceLocks {
 public:
  InstanceLocks() = default;
  ~InstanceLocks();
  InstanceLocks(const InstanceLocks&) = delete;
  InstanceLocks& operator=(const InstanceLocks&) = delete;

  // The table, within this network namespace: an abstract unix socket named
  // after it (abstract sockets belong to the network namespace and vanish
  // with the process). FailedPrecondition naming the holder's pid.
  absl::Status LockTable(const std::string& table);
  // The state directory: flock on DIR/lock, which records the holder's pid.
  absl::Status LockStateDir(const std::string& dir);
  // A unix socket path: fine when absent; a stale file that no server answers
  // on is removed; one a server answers on is FailedPrecondition.
  static absl::Status ClaimSocketPath(const std::string& path);

 private:
  std::vector<int> fds_;
};

}  // namespace nftproxy::server
