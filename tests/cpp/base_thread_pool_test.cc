#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "onnxq/base/thread_pool.h"

namespace onnxq {
namespace {

TEST(BaseThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 4, 7, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0};
      pool.ParallelFor(n, [&](int64_t b, int64_t e) {
        ++calls;
        ASSERT_LT(b, e);
        for (int64_t i = b; i < e; ++i) ++hits[i];
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      // Never more chunks than threads, and never an empty chunk (n smaller than threads).
      EXPECT_LE(calls.load(), std::min<int64_t>(threads, std::max<int64_t>(n, 0)));
    }
  }
}

TEST(BaseThreadPool, GrainLimitsChunks) {
  ThreadPool pool(4);
  std::atomic<int> calls{0};
  pool.ParallelFor(10, [&](int64_t b, int64_t e) {
    ++calls;
    EXPECT_GE(e - b, 5);
  }, 5);
  EXPECT_EQ(calls.load(), 2);
}

TEST(BaseThreadPool, PartitionIsDeterministic) {
  ThreadPool pool(3);
  auto record = [&] {
    std::mutex mu;
    std::set<std::pair<int64_t, int64_t>> chunks;
    pool.ParallelFor(1000, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mu);
      chunks.insert({b, e});
    });
    return chunks;
  };
  const auto first = record();
  EXPECT_EQ(first, (std::set<std::pair<int64_t, int64_t>>{{0, 333}, {333, 666}, {666, 1000}}));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(record(), first);
}

TEST(BaseThreadPool, FloatSumIsBitIdenticalAcrossRuns) {
  std::vector<float> v(100003);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1.0f / static_cast<float>(i + 1) * ((i % 3) ? 1.f : -1.7f);
  auto sum = [&](ThreadPool& pool) {
    std::vector<float> partial(static_cast<size_t>(pool.num_threads()), 0.f);
    std::vector<int64_t> begins;
    std::mutex mu;
    pool.ParallelFor(static_cast<int64_t>(v.size()), [&](int64_t b, int64_t e) {
      float s = 0.f;
      for (int64_t i = b; i < e; ++i) s += v[i];
      std::lock_guard<std::mutex> lock(mu);
      // chunk index from its begin: chunks are [n*c/chunks, ...)
      int64_t c = 0;
      while (static_cast<int64_t>(v.size()) * (c + 1) / pool.num_threads() <= b) ++c;
      partial[c] = s;
    });
    float total = 0.f;
    for (float p : partial) total += p;
    return total;
  };
  ThreadPool pool(2);
  const float first = sum(pool);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sum(pool), first);
}

TEST(BaseThreadPool, NestedCallRunsInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(4, [&](int64_t b, int64_t e) {
    const std::thread::id outer = std::this_thread::get_id();
    for (int64_t i = b; i < e; ++i) {
      pool.ParallelFor(10, [&](int64_t ib, int64_t ie) {
        EXPECT_EQ(std::this_thread::get_id(), outer);  // inline on the calling thread
        total += ie - ib;
      });
    }
  });
  EXPECT_EQ(total.load(), 40);
}

TEST(BaseThreadPool, RunTasksAssignsTasksStatically) {
  ThreadPool pool(3);
  std::vector<std::thread::id> owner(10);
  pool.RunTasks(10, [&](int64_t t) { owner[t] = std::this_thread::get_id(); });
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<std::thread::id> again(10);
    pool.RunTasks(10, [&](int64_t t) { again[t] = std::this_thread::get_id(); });
    EXPECT_EQ(again, owner);
  }
  // Task t runs on thread t % 3; thread 0 is the caller.
  for (int t = 0; t < 10; ++t) EXPECT_EQ(owner[t], owner[t % 3]);
  EXPECT_EQ(owner[0], std::this_thread::get_id());
  EXPECT_NE(owner[1], owner[0]);
  EXPECT_NE(owner[2], owner[1]);
}

TEST(BaseThreadPool, ManySmallCallsAndConcurrentCallers) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto work = [&] {
    for (int i = 0; i < 500; ++i) {
      pool.ParallelFor(3, [&](int64_t b, int64_t e) { total += e - b; });
    }
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(total.load(), 2 * 500 * 3);
}

}  // namespace
}  // namespace onnxq
