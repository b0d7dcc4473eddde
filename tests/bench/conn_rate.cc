#include "tests/bench/conn_rate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "tests/bench/lab.h"

namespace npxbench {
namespace {

sockaddr_in Addr(uint32_t addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(addr);
  return sa;
}

// 0 when connected, else the errno (ETIMEDOUT when nothing happened).
int ConnectOnce(const sockaddr_in& sa, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  int err = 0;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int r = poll(&p, 1, timeout_ms);
      if (r == 1) {
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      } else {
        err = ETIMEDOUT;
      }
    }
  }
  close(fd);
  return err;
}

}  // namespace

void PinThisThread(int cpu) {
  if (cpu < 0 || cpu >= static_cast<int>(std::thread::hardware_concurrency())) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

absl::Status AcceptServer::Start(const std::string& netns, uint16_t port, int cpu) {
  std::promise<absl::Status> ready;
  std::future<absl::Status> started = ready.get_future();
  stop_ = false;
  thread_ = std::thread([this, netns, port, cpu, &ready] {
    PinThisThread(cpu);
    if (auto s = Lab::Get().EnterNetns(netns); !s.ok()) {
      ready.set_value(s);
      return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in sa = Addr(INADDR_ANY, port);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
      ready.set_value(absl::InternalError(absl::StrCat("listen on port ", port, " in ", netns, ": ", strerror(errno))));
      if (fd >= 0) close(fd);
      return;
    }
    ready.set_value(absl::OkStatus());
    while (!stop_.load(std::memory_order_relaxed)) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      for (;;) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) break;
        close(c);
        accepted_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    close(fd);
  });
  absl::Status s = started.get();
  if (!s.ok()) {
    thread_.join();
  }
  return s;
}

void AcceptServer::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<RateResult> MeasureConnRate(const std::string& netns, uint32_t addr, uint16_t port, double seconds,
                                           int cpu) {
  absl::StatusOr<RateResult> out;
  std::thread t([&] {
    PinThisThread(cpu);
    if (auto s = Lab::Get().EnterNetns(netns); !s.ok()) {
      out = s;
      return;
    }
    const sockaddr_in sa = Addr(addr, port);
    RateResult r;
    int consecutive_failures = 0;
    const double start = NowSeconds();
    const double end = start + seconds;
    double now = start;
    while (now < end) {
      int err = ConnectOnce(sa, 200);
      if (err == 0) {
        ++r.ok;
        consecutive_failures = 0;
      } else {
        if (r.failed == 0) r.first_errno = err;
        ++r.failed;
        if (++consecutive_failures >= 20) {
          now = NowSeconds();
          break;
        }
      }
      now = NowSeconds();
    }
    r.seconds = now - start;
    out = r;
  });
  t.join();
  return out;
}

bool CanConnect(const std::string& netns, uint32_t addr, uint16_t port, int timeout_ms) {
  bool ok = false;
  std::thread t([&] {
    if (!Lab::Get().EnterNetns(netns).ok()) return;
    ok = ConnectOnce(Addr(addr, port), timeout_ms) == 0;
  });
  t.join();
  return ok;
}

}  // namespace npxbench
