// A small fixed-size thread pool with deterministic static partitioning: for a given thread count,
// ParallelFor always hands the same index ranges to the same chunk ids, so results that depend on
// summation order are reproducible run to run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace onnxq {

class ThreadPool {
 public:
  // num_threads <= 0 means all hardware threads. The calling thread takes part in the work, so a
  // pool of 1 runs everything inline.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const;
  // Splits [0, n) into at most num_threads() contiguous chunks (each at least `grain` long) and
  // calls fn(begin, end) for each, blocking until all are done. The chunk ranges depend only on n,
  // grain and num_threads(); which thread runs a chunk does not (the caller runs the chunks that
  // no worker has claimed yet, so a descheduled worker never stalls the call). Not reentrant: a
  // nested call from inside fn runs inline.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                   int64_t grain = 1);
  // Calls fn(task) for task in [0, num_tasks); tasks are assigned to threads statically
  // (task % num_threads), so which thread runs which task is deterministic.
  void RunTasks(int64_t num_tasks, const std::function<void(int64_t task)>& fn);

  static int HardwareThreads();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace onnxq
