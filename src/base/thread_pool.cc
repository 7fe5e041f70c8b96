#include "onnxq/base/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace onnxq {
namespace {
// Set while a thread executes pool work: nested ParallelFor / RunTasks calls then run inline instead
// of deadlocking on the busy workers.
thread_local int t_in_pool_work = 0;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spin iterations (pause instructions) before blocking: consecutive kernels of a model run are
// microseconds apart, and a futex wake-up costs about as much as a small layer.
constexpr int kSpins = 20000;
}  // namespace

// A job is a fixed set of `units`. In claim mode (ParallelFor) any thread may run any unit: units are
// claimed through `claim` = (job id << 32 | next unit), so a worker that wakes late (descheduled on
// a loaded machine) never holds up the caller, which then runs the remaining units itself. The
// results stay deterministic because the units (index ranges) are fixed; only who runs them varies.
// In static mode (RunTasks) worker t runs exactly the units assigned to thread t.
struct ThreadPool::Impl {
  int num_threads = 1;
  std::vector<std::thread> workers;
  std::mutex call_mu;  // serializes concurrent callers from different threads

  std::mutex mu;
  std::condition_variable wake;
  std::condition_variable done_cv;
  bool stop = false;
  // Current job, written under mu before `job_id` is bumped.
  std::atomic<uint64_t> job_id{0};
  const std::function<void(int64_t unit, int thread)>* fn = nullptr;
  int64_t units = 0;
  bool static_mode = false;
  std::atomic<uint64_t> claim{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> waiting{0};  // caller blocked on done_cv

  void FinishUnits(int64_t count) {
    if (done.fetch_add(count, std::memory_order_acq_rel) + count == units &&
        waiting.load(std::memory_order_acquire) != 0) {
      std::lock_guard<std::mutex> lock(mu);
      done_cv.notify_one();
    }
  }

  // Runs units of job `id` from thread `thread`. Never touches a later job's units.
  void Work(uint64_t id, const std::function<void(int64_t, int)>* f, int64_t n, bool is_static,
            int thread) {
    ++t_in_pool_work;
    if (is_static) {
      int64_t count = 0;
      for (int64_t u = thread; u < n; u += num_threads) {
        (*f)(u, thread);
        ++count;
      }
      if (count > 0) FinishUnits(count);
    } else {
      uint64_t cur = claim.load(std::memory_order_acquire);
      while ((cur >> 32) == (id & 0xFFFFFFFFu) && static_cast<int64_t>(cur & 0xFFFFFFFFu) < n) {
        if (claim.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) {
          (*f)(static_cast<int64_t>(cur & 0xFFFFFFFFu), thread);
          FinishUnits(1);
          cur = claim.load(std::memory_order_acquire);
        }
      }
    }
    --t_in_pool_work;
  }

  void WorkerLoop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t id = job_id.load(std::memory_order_acquire);
      for (int spin = 0; id == seen && spin < kSpins; ++spin) {
        CpuRelax();
        id = job_id.load(std::memory_order_acquire);
      }
      const std::function<void(int64_t, int)>* f;
      int64_t n;
      bool is_static;
      {
        std::unique_lock<std::mutex> lock(mu);
        if (id == seen) {
          wake.wait(lock, [&] { return stop || job_id.load(std::memory_order_acquire) != seen; });
        }
        if (stop) return;
        id = job_id.load(std::memory_order_acquire);
        f = fn;
        n = units;
        is_static = static_mode;
      }
      seen = id;
      Work(id, f, n, is_static, thread);
    }
  }

  void Run(int64_t n, bool is_static, const std::function<void(int64_t, int)>& f) {
    std::lock_guard<std::mutex> call_lock(call_mu);
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(mu);
      id = job_id.load(std::memory_order_relaxed) + 1;
      fn = &f;
      units = n;
      static_mode = is_static;
      done.store(0, std::memory_order_relaxed);
      claim.store((id & 0xFFFFFFFFu) << 32, std::memory_order_release);
      job_id.store(id, std::memory_order_release);
    }
    wake.notify_all();
    Work(id, &f, n, is_static, 0);
    for (int spin = 0; done.load(std::memory_order_acquire) != n && spin < kSpins; ++spin) CpuRelax();
    if (done.load(std::memory_order_acquire) != n) {
      std::unique_lock<std::mutex> lock(mu);
      waiting.store(1, std::memory_order_release);
      done_cv.wait(lock, [&] { return done.load(std::memory_order_acquire) == n; });
      waiting.store(0, std::memory_order_release);
    }
  }
};

ThreadPool::ThreadPool(int num_threads) : impl_(std::make_unique<Impl>()) {
  impl_->num_threads = num_threads <= 0 ? HardwareThreads() : num_threads;
  for (int i = 1; i < impl_->num_threads; ++i) {
    impl_->workers.emplace_back([this, i] { impl_->WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  for (std::thread& t : impl_->workers) t.join();
}

int ThreadPool::num_threads() const { return impl_->num_threads; }

int ThreadPool::HardwareThreads() {
  unsigned int n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(impl_->num_threads, std::max<int64_t>(n / grain, 1));
  if (chunks <= 1 || t_in_pool_work > 0) {
    fn(0, n);
    return;
  }
  // Chunk c always covers [n*c/chunks, n*(c+1)/chunks).
  impl_->Run(chunks, false, [&](int64_t c, int) {
    const int64_t begin = n * c / chunks;
    const int64_t end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::RunTasks(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
  if (num_tasks <= 0) return;
  if (num_tasks == 1 || impl_->num_threads == 1 || t_in_pool_work > 0) {
    for (int64_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  impl_->Run(num_tasks, true, [&](int64_t t, int) { fn(t); });
}

}  // namespace onnxq
