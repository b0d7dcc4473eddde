#include "server/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace nftproxy::server {

void ParallelFor(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn) {
  const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const size_t parts = n < min_parallel ? 1 : std::min<size_t>({cores, 4, n});
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> threads;
  const size_t step = (n + parts - 1) / parts;
  for (size_t begin = step; begin < n; begin += step) {
    threads.emplace_back([&fn, begin, end = std::min(n, begin + step)] { fn(begin, end); });
  }
  fn(0, std::min(n, step));
  for (std::thread& t : threads) t.join();
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

}  // namespace nftproxy::server
