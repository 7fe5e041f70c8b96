// Runs over a batch dimension: many exported models fix their batch size (a Reshape to
// [1, 1000], an input declared [1, 3, 224, 224]), so calibration, sensitivity and evaluation
// split their sample batches into runs of that size (RunOptions::batch_chunk) and join the results.
#pragma once

#include <cstdint>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

// The batch size every run of `model` must use: the fixed first dimension its runtime inputs
// declare (inputs with a symbolic or unknown first dimension do not constrain it), or 0 when none
// fixes it. Inputs fixing different sizes are an error naming them.
StatusOr<int64_t> FixedBatchSize(const Model& model);

// The largest multiple of `fixed` not above `wanted` (at least `fixed`); `wanted` when fixed <= 0.
int64_t AlignToBatch(int64_t wanted, int64_t fixed);

// Rows [begin, begin + n) of `t` along its first dimension (a copy).
StatusOr<Tensor> SliceBatch(const Tensor& t, int64_t begin, int64_t n);
// `parts` joined along their first dimension; the other dimensions and the types must agree.
StatusOr<Tensor> ConcatBatch(const std::vector<Tensor>& parts);

}  // namespace onnxq
