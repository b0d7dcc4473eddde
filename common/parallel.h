// Small helpers for spreading large work (a big request, a whole-table
// compile) over the machine's cores. They return only after every piece of
// work has finished.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <type_traits>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace nftproxy {

// Calls fn(begin, end) on disjoint ranges covering [0, n): on this thread
// alone when n < min_parallel, else split over up to 4 threads (this one
// included), as many as there are cores.
void ParallelFor(size_t n, size_t min_parallel, const std::function<void(size_t begin, size_t end)>& fn);

// The same, numbering the ranges: fn(part, begin, end) with part in
// [0, ParallelParts(n, min_parallel)), ranges in order of part.
size_t ParallelParts(size_t n, size_t min_parallel);
void ParallelForParts(size_t n, size_t min_parallel,
                      const std::function<void(size_t part, size_t begin, size_t end)>& fn);

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

// A process-wide TaskThread for work nobody waits for.
TaskThread& Background();

// Destroys `v` (moved from the argument) on the Background thread: freeing a
// large structure can take milliseconds that need not delay a reply.
template <typename T>
void DiscardLater(T&& v) {
  auto* p = new std::decay_t<T>(std::forward<T>(v));
  Background().Post([p] { delete p; });
}

}  // namespace nftproxy
