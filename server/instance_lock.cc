#include "server/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nftproxy::server {

namespace {

sockaddr_un AbstractAddress(const std::string& name, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  // sun_path[0] == '\0': the abstract namespace.
  const std::string n = name.substr(0, sizeof(a.sun_path) - 2);
  memcpy(a.sun_path + 1, n.data(), n.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n.size());
  return a;
}

// The pid of whoever listens on the abstract socket, or 0.
pid_t HolderOf(const sockaddr_un& a, socklen_t len) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  pid_t pid = 0;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a), len) == 0) {
    ucred cred{};
    socklen_t n = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0) pid = cred.pid;
  }
  close(fd);
  return pid;
}

std::string ByPid(pid_t pid) { return pid > 0 ? absl::StrCat(" by pid ", pid) : ""; }

}  // namespace

InstanceLocks::~InstanceLocks() {
  for (int fd : fds_) close(fd);
}

absl::Status InstanceLocks::LockTable(const std::string& table) {
  socklen_t len = 0;
  const sockaddr_un a = AbstractAddress(absl::StrCat("nftproxy/table/inet/", table), &len);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("table lock: socket: ", strerror(errno)));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0 || listen(fd, 1) != 0) {
    const int err = errno;
    close(fd);
    if (err != EADDRINUSE) return absl::InternalError(absl::StrCat("table lock: ", strerror(err)));
    return absl::FailedPreconditionError(absl::StrCat(
        "table inet ", table, " is already served", ByPid(HolderOf(a, len)),
        " in this network namespace; stop that server, or give this one another --table"));
  }
  fds_.push_back(fd);
  return absl::OkStatus();
}

absl::Status InstanceLocks::LockStateDir(const std::string& dir) {
  const std::string path = dir + "/lock";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("--state-dir ", dir, ": opening ", path, ": ", strerror(errno)));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (err != EWOULDBLOCK) return absl::InternalError(absl::StrCat("--state-dir ", dir, ": lock: ", strerror(err)));
    pid_t pid = 0;
    if (n > 0) (void)absl::SimpleAtoi(absl::string_view(buf, static_cast<size_t>(n)), &pid);
    return absl::FailedPreconditionError(absl::StrCat("--state-dir ", dir, " is in use", ByPid(pid),
                                                      "; one server per state directory"));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without it; the pid only helps the message above.
  }
  fds_.push_back(fd);
  return absl::OkStatus();
}

absl::Status InstanceLocks::ClaimSocketPath(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("--listen ", path, ": longer than a unix socket path may be"));
  }
  memcpy(a.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
  const int err = errno;
  pid_t pid = 0;
  if (rc == 0) {
    ucred cred{};
    socklen_t n = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0) pid = cred.pid;
  }
  close(fd);
  if (rc == 0) {
    return absl::FailedPreconditionError(absl::StrCat("--listen unix://", path, ": a server answers there",
                                                      ByPid(pid), "; stop it or listen elsewhere"));
  }
  // Nobody answers: a socket left by a server that died is replaced.
  if (err == ECONNREFUSED) unlink(path.c_str());
  return absl::OkStatus();
}

}  // namespace nftproxy::server
