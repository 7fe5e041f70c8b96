// Static memory plan: every intermediate value gets an offset in one arena, and values whose
// lifetimes (in steps) do not overlap share bytes. Greedy by size (largest first, lowest offset
// that fits beside the already placed values that are live at the same time): simple and close
// to optimal for chain-like CNN graphs.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "onnxq/ir/graph.h"

namespace onnxq::runtime {

struct BufferRequest {
  ValueId value;
  int64_t bytes;
  int64_t first_step;  // written by this step
  int64_t last_step;   // last read (inclusive)
};

struct MemoryPlan {
  std::vector<std::pair<ValueId, int64_t>> offsets;  // 64-byte aligned
  int64_t total_bytes = 0;                           // arena size (the peak)
};

MemoryPlan PlanMemory(const std::vector<BufferRequest>& requests);

}  // namespace onnxq::runtime
