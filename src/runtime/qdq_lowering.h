// QDQ lowering: rewrites the quantized patterns of a QDQ model (DequantizeLinear -> op ->
// QuantizeLinear) into integer nodes that run on the int8 kernels, the way ONNX Runtime fuses
// them, so that onnxq computes what ONNX Runtime computes for the same file (docs/int8.md).
// Also the registry of the non-default-domain integer ops those nodes use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "runtime/op_kernel.h"

namespace onnxq::runtime {

struct QdqLoweringStats {
  int64_t conv = 0;         // DQ + DQ(w) [+ DQ(b)] -> Conv [-> Relu/Clip] -> Q  => QLinearConv
  int64_t matmul = 0;       // DQ + DQ(w) -> MatMul -> Q                         => QLinearMatMul
  int64_t gemm = 0;         // DQ + DQ(w) [+ DQ(b)] -> Gemm -> Q                 => com.microsoft.QGemm
  int64_t add = 0;          // DQ + DQ -> Add -> Q                               => com.microsoft.QLinearAdd
  int64_t pool = 0;         // DQ -> GlobalAveragePool / AveragePool / MaxPool -> Q
  int64_t passthrough = 0;  // DQ -> Reshape / Flatten -> Q with equal parameters: runs on 8-bit data
  int64_t folded_dq = 0;    // DequantizeLinear of constants left for float islands, folded to floats
  int64_t groups() const { return conv + matmul + gemm + add + pool + passthrough; }
};

// True if the graph has a DequantizeLinear node (a QDQ model worth lowering).
bool HasQdqNodes(const Graph& g);

// Rewrites `model` in place. Patterns that do not match exactly (non-constant weights or scales,
// per-axis activation scales, broadcasting Add, unknown shapes where they matter, ...) stay as they
// are and run in float (Q/DQ computed as ONNX defines them): float islands. Value ids and names of
// everything kept stay valid; the float intermediates inside a lowered group disappear.
StatusOr<QdqLoweringStats> LowerQdqToInteger(Model& model);

// Ops outside the default ONNX domain: com.microsoft QLinearAdd, QLinearGlobalAveragePool,
// QLinearAveragePool, QGemm (as ONNX Runtime defines them) and ai.onnxq Int8MaxPool (MaxPool on
// 8-bit data; ONNX's own MaxPool takes 8-bit types from opset 12 on, but the executor's MaxPool is
// float). Defined in ops_integer.cc.
struct DomainOpRegistration {
  std::string domain;
  OpRegistration reg;
};
void RegisterContribIntegerOps(std::vector<DomainOpRegistration>& r);
const std::vector<DomainOpRegistration>& ContribRegistry();

}  // namespace onnxq::runtime
