#include "server/unix_listener.h"

#include <fcntl.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"

namespace nftproxy::server {

namespace {

// Credentials by descriptor, for the connections this process accepted. An
// entry is replaced when its number is accepted again; the map holds at most
// one entry per open descriptor number.
struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<int, PeerCredentials> by_fd ABSL_GUARDED_BY(mu);
};

Registry& Peers() {
  static Registry* r = new Registry;  // never destroyed: gRPC threads may ask at exit
  return *r;
}

std::optional<PeerCredentials> ReadCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  PeerCredentials out;
  out.uid = cred.uid;
  out.pid = cred.pid;
  out.gids.push_back(cred.gid);
  gid_t groups[256];
  len = sizeof(groups);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
    for (size_t i = 0; i < len / sizeof(gid_t); ++i) {
      if (groups[i] != cred.gid) out.gids.push_back(groups[i]);
    }
  }
  return out;
}

}  // namespace

std::optional<PeerCredentials> PeerOfDescriptor(absl::string_view peer) {
  int fd = -1;
  if (!absl::ConsumePrefix(&peer, "fd:") || !absl::SimpleAtoi(peer, &fd)) return std::nullopt;
  Registry& r = Peers();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_fd.find(fd);
  if (it == r.by_fd.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(const std::string& path, mode_t mode, gid_t gid) {
  sockaddr_un addr{};
  // Bound under a temporary name in the same directory, then renamed: the
  // path never exists with a mode or group other than the final ones.
  const std::string temp = absl::StrCat(path, ".", getpid(), ".new");
  if (temp.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("--listen unix://", path, ": the path is too long for a socket (",
                                                   sizeof(addr.sun_path) - 12, " bytes at most)"));
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  auto fail = [&](const char* what) {
    const int err = errno;
    close(fd);
    unlink(temp.c_str());
    return absl::InternalError(absl::StrCat("--listen unix://", path, ": ", what, ": ", strerror(err)));
  };
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, temp.c_str(), temp.size() + 1);
  unlink(temp.c_str());
  // The inode a bind creates takes the socket's own mode (less the umask):
  // owner only until it has its final mode.
  if (fchmod(fd, 0600) != 0) return fail("fchmod");
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) return fail("bind");
  if (gid != static_cast<gid_t>(-1) && chown(temp.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    return fail("giving it its group");
  }
  if (chmod(temp.c_str(), mode) != 0) return fail("chmod");
  if (listen(fd, 512) != 0) return fail("listen");
  struct stat st;
  if (stat(temp.c_str(), &st) != 0) return fail("stat");
  if (rename(temp.c_str(), path.c_str()) != 0) return fail("renaming it into place");
  const int stop = eventfd(0, EFD_CLOEXEC);
  if (stop < 0) return fail("eventfd");
  return std::unique_ptr<UnixListener>(new UnixListener(path, fd, stop, st.st_dev, st.st_ino));
}

UnixListener::~UnixListener() { Stop(); }

void UnixListener::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] { Loop(server); });
}

void UnixListener::Loop(grpc::Server* server) {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;  // Stop
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: refuse new connections for a moment
        // rather than spin.
        log::Warning("cannot accept a connection", {{"socket", path_}, {"error", strerror(errno)}});
        usleep(100 * 1000);
        continue;
      }
      log::Error("stopped accepting connections", {{"socket", path_}, {"error", strerror(errno)}});
      return;
    }
    std::optional<PeerCredentials> cred = ReadCredentials(conn);
    if (!cred) {
      close(conn);
      continue;
    }
    {
      Registry& r = Peers();
      absl::MutexLock lock(&r.mu);
      r.by_fd[conn] = std::move(*cred);
    }
    grpc::AddInsecureChannelFromFd(server, conn);
  }
}

void UnixListener::Stop() {
  if (fd_ < 0) return;
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) log::Error("cannot stop accepting", {{"error", strerror(errno)}});
  if (thread_.joinable()) thread_.join();
  close(fd_);
  close(stop_fd_);
  fd_ = -1;
  struct stat st;
  if (stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) unlink(path_.c_str());
}

}  // namespace nftproxy::server
