// Small helpers for spreading a large request's work over the machine's
// cores. Both return only after every piece of work has finished.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace nftproxy::server {

// Calls fn(begin, end) on disjoint ranges covering [0, n): on this thread
// alone when n < min_parallel, else split over up to 4 threads (this one
// included), as many as there are cores.
void ParallelFor(size_t n, size_t min_parallel, const std::function<void(size_t begin, size_t end)>& fn);

// Runs `side` on another thread while `main` runs on this one.
void RunAlongside(const std::function<void()>& main, const std::function<void()>& side);

// One thread that runs posted tasks in order. The destructor runs the tasks
// still queued, then joins.
class TaskThread {
 public:
  TaskThread();
  ~TaskThread();
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;
  void Post(std::function<void()> task);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace nftproxy::server
