// Network namespaces and child processes for nftproxy_bench.
//
// Everything the lab creates is recorded so that it can be undone on every
// exit path: processes are killed by pid, namespaces are deleted by name,
// the scratch directory is removed. The same cleanup runs from atexit() and
// from the SIGINT/SIGTERM/SIGHUP handler (async-signal-safe there).
#ifndef NFTPROXY_TESTS_BENCH_LAB_H_
#define NFTPROXY_TESTS_BENCH_LAB_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace npxbench {

// How a child process ended, with its resource usage.
struct ProcResult {
  bool started = false;
  bool timed_out = false;
  int exit_code = -1;    // valid when the child exited
  int term_signal = 0;   // non-zero when a signal ended it
  double wall_s = 0;     // from just before spawn to reaping
  double user_s = 0;
  double sys_s = 0;      // kernel time of the child (the kernel's share of a ruleset load)
  long maxrss_kb = 0;    // peak RSS of the child
  std::string output;    // stdout+stderr (first 64 KiB)

  bool ok() const { return started && !timed_out && term_signal == 0 && exit_code == 0; }
  std::string Describe() const;  // "exit 1: <first line of output>" etc.
};

struct RunOptions {
  std::string stdin_path;   // empty: /dev/null
  double timeout_s = 600;   // killed (SIGKILL) after this
};

// CPU times of a live process, in seconds (from /proc/<pid>/stat).
struct CpuTimes {
  double user_s = 0;
  double sys_s = 0;
};

class Lab {
 public:
  // Creates the scratch directory /tmp/npx-bench-<pid> and installs the
  // cleanup handlers. Call once, before any thread is started.
  static absl::Status Init();
  static Lab& Get();

  const std::string& tmpdir() const { return tmpdir_; }

  // `ip netns add npx-bench-<pid>-<tag>`, lo up. Returns the full name.
  absl::StatusOr<std::string> AddNetns(const std::string& tag);
  // Kills the processes the lab started inside it, then deletes it.
  void DelNetns(const std::string& name);

  // Runs argv to completion inside network namespace `netns` ("" = the
  // bench's own). Only call from the main thread.
  ProcResult Run(const std::string& netns, const std::vector<std::string>& argv, const RunOptions& opts = {});
  // Like Run, fails with the command's output unless it exited 0.
  absl::Status RunOk(const std::string& netns, const std::vector<std::string>& argv, double timeout_s = 60);

  // Starts argv in the background inside `netns`, stdout+stderr to log_path.
  absl::StatusOr<pid_t> Spawn(const std::string& netns, const std::vector<std::string>& argv,
                              const std::string& log_path);
  // SIGTERM, then SIGKILL after timeout_s; reaps it. Returns the wait status.
  int Stop(pid_t pid, double timeout_s = 10);
  bool Alive(pid_t pid) const;

  // Moves the calling thread into a namespace (by full name) / back home.
  absl::Status EnterNetns(const std::string& netns);
  void LeaveNetns();

  // Undoes everything; safe to call more than once.
  void Cleanup();

 private:
  Lab() = default;
  std::string tmpdir_;
  int home_netns_fd_ = -1;
};

CpuTimes ReadCpuTimes(pid_t pid);
// VmRSS / VmHWM of a live process in KiB (0 if unknown).
long ReadStatusKb(pid_t pid, const char* field);

double NowSeconds();  // CLOCK_MONOTONIC

}  // namespace npxbench

#endif  // NFTPROXY_TESTS_BENCH_LAB_H_
