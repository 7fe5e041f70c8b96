#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

namespace onnxq::runtime {

MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests) {
  constexpr int64_t kAlign = 64;
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by first use so the result is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (requests[a].bytes != requests[b].bytes) return requests[a].bytes > requests[b].bytes;
    return requests[a].first_step < requests[b].first_step;
  });
  struct Placed {
    int64_t offset, size, first, last;
  };
  std::vector<Placed> placed;
  MemoryPlan plan;
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    const int64_t size = (std::max<int64_t>(r.bytes, 1) + kAlign - 1) / kAlign * kAlign;
    std::vector<std::pair<int64_t, int64_t>> busy;  // [offset, end) of overlapping lifetimes
    for (const Placed& p : placed)
      if (p.first <= r.last_step && r.first_step <= p.last)
        busy.push_back({p.offset, p.offset + p.size});
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [b, e] : busy) {
      if (offset + size <= b) break;
      offset = std::max(offset, e);
    }
    placed.push_back({offset, size, r.first_step, r.last_step});
    plan.offsets.push_back({r.value, offset});
    plan.total_bytes = std::max(plan.total_bytes, offset + size);
  }
  return plan;
}

}  // namespace onnxq::runtime
