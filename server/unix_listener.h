// The server's unix sockets, accepted by nftproxy itself rather than by
// gRPC, for two reasons: the peer's credentials (SO_PEERCRED: uid, gid, pid;
// SO_PEERGROUPS) are read from each connection and name the caller to the
// authorization policy, and the socket file has its final mode and group
// from the moment it appears at its path (it is bound under a temporary name,
// given its mode and group, then renamed into place).
//
// Each accepted connection is handed to the gRPC server as a channel on its
// descriptor; gRPC then names the call's peer "fd:N", which PeerOfDescriptor
// maps back to the credentials recorded when N was accepted.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nftproxy::server {

struct PeerCredentials {
  uint32_t uid = 0;
  std::vector<uint32_t> gids;  // primary first, then supplementary
  int32_t pid = 0;
};

// The credentials of the unix connection gRPC calls `peer` ("fd:N"), if it is
// one this process accepted.
std::optional<PeerCredentials> PeerOfDescriptor(absl::string_view peer);

class UnixListener {
 public:
  // Binds and listens on `path` with `mode` and group `gid` (-1: the
  // server's). The caller has made sure no server answers on `path`
  // (InstanceLocks::ClaimSocketPath).
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(const std::string& path, mode_t mode, gid_t gid);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Accepts connections for `server` (started, and outliving Stop) on a
  // thread of its own.
  void Start(grpc::Server* server);
  // Stops accepting and removes the socket file, if it is still this one.
  void Stop();

 private:
  UnixListener(std::string path, int fd, int stop_fd, dev_t dev, ino_t ino)
      : path_(std::move(path)), fd_(fd), stop_fd_(stop_fd), dev_(dev), ino_(ino) {}
  void Loop(grpc::Server* server);

  const std::string path_;
  int fd_;
  int stop_fd_;  // an eventfd: readable once Stop is called
  dev_t dev_;
  ino_t ino_;
  std::thread thread_;
};

}  // namespace nftproxy::server
