// TCP connection-rate measurement through namespaces: an accept-and-close
// server and a client that opens and resets connections one after another.
#ifndef NFTPROXY_TESTS_BENCH_CONN_RATE_H_
#define NFTPROXY_TESTS_BENCH_CONN_RATE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace npxbench {

// Accepts connections on 0.0.0.0:port inside a namespace and closes them at
// once, on its own thread.
class AcceptServer {
 public:
  ~AcceptServer() { Stop(); }
  // cpu >= 0 pins the accepting thread to that CPU.
  absl::Status Start(const std::string& netns, uint16_t port, int cpu = -1);
  void Stop();
  uint64_t accepted() const { return accepted_.load(); }

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
};

struct RateResult {
  double seconds = 0;
  uint64_t ok = 0;
  uint64_t failed = 0;
  int first_errno = 0;  // of the first failure
  double rate() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0; }
};

// From inside `netns`, for `seconds`: non-blocking connect to addr:port, wait
// until connected, close with SO_LINGER 0 (RST), repeat. One connection at a
// time. Stops early after many consecutive failures. cpu >= 0 pins the client
// to that CPU.
absl::StatusOr<RateResult> MeasureConnRate(const std::string& netns, uint32_t addr, uint16_t port, double seconds,
                                           int cpu = -1);

// Pins the calling thread to one CPU (no-op if cpu < 0 or does not exist).
void PinThisThread(int cpu);

// One connection attempt from `netns`; true if it connected within timeout_ms.
bool CanConnect(const std::string& netns, uint32_t addr, uint16_t port, int timeout_ms = 1000);

}  // namespace npxbench

#endif  // NFTPROXY_TESTS_BENCH_CONN_RATE_H_
