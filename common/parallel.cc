#include "common/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace nftproxy {

size_t ParallelParts(size_t n, size_t min_parallel) {
  const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  return n < min_parallel ? 1 : std::min<size_t>({cores, 4, n});
}

void ParallelForParts(size_t n, size_t min_parallel, const std::function<void(size_t, size_t, size_t)>& fn) {
  const size_t parts = ParallelParts(n, min_parallel);
  if (parts <= 1) {
    fn(0, 0, n);
    return;
  }
  std::vector<std::thread> threads;
  const size_t step = (n + parts - 1) / parts;
  for (size_t part = 1; part < parts; ++part) {
    const size_t begin = std::min(n, part * step), end = std::min(n, begin + step);
    threads.emplace_back([&fn, part, begin, end] { fn(part, begin, end); });
  }
  fn(0, 0, std::min(n, step));
  for (std::thread& t : threads) t.join();
}

void ParallelFor(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn) {
  ParallelForParts(n, min_parallel, [&fn](size_t, size_t begin, size_t end) { fn(begin, end); });
}

void RunAlongside(const std::function<void()>& main, const std::function<void()>& side) {
  std::thread t(side);
  main();
  t.join();
}

TaskThread::TaskThread() : thread_([this] { Loop(); }) {}

TaskThread::~TaskThread() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void TaskThread::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void TaskThread::Loop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](TaskThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) { return t->stopping_ || !t->tasks_.empty(); },
          this));
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

TaskThread& Background() {
  // Destroyed at exit, after it ran what was posted.
  static TaskThread thread;
  return thread;
}

}  // namespace nftproxy
