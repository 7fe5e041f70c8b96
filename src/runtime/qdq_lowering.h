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
  // Channels-last chains (see LowerQdqToInteger): nodes moved to NHWC, and the Transpose nodes
  // added at the chains' borders.
  int64_t float_out_conv = 0;  // DQ + DQ(w) [+ DQ(b)] -> 1x1 Conv with a float output => ai.onnxq Int8ConvFloat
  int64_t channels_last = 0;
  int64_t layout_transposes = 0;
  // Channels-last QLinearAdds folded into the convolution computing one operand (ai.onnxq
  // QLinearConvAdd); still counted in `add`.
  int64_t fused_add = 0;
  int64_t groups() const { return conv + matmul + gemm + add + pool + passthrough; }
};

// True if the graph has a DequantizeLinear node (a QDQ model worth lowering).
bool HasQdqNodes(const Graph& g);

// Rewrites `model` in place. Patterns that do not match exactly (non-constant weights or scales,
// per-axis activation scales, broadcasting Add, unknown shapes where they matter, ...) stay as they
// are and run in float (Q/DQ computed as ONNX defines them): float islands. Value ids and names of
// everything kept stay valid; the float intermediates inside a lowered group disappear.
//
// Then chains of lowered convolutions run channels-last, as ONNX Runtime runs them: every
// QLinearConv whose shape Int8ConvNhwc supports becomes com.microsoft QLinearConv with
// channels_last = 1, and QLinearAdd / QLinearGlobalAveragePool whose inputs are channels-last
// follow. A chain reads an NCHW input directly (group-1 convolution, onnxq_nchw_input = 1) or
// through a Transpose; a value leaving the chain (float island, NCHW-only op, graph output) is
// transposed back under its own name. The NHWC values inside a chain are new values named
// "<name>_nhwc" ([N, H, W, C]); the NCHW value of that name no longer exists unless it leaves the
// chain. channels_last = false keeps everything NCHW (every quantized value under its own name).
// Inside a chain, a QLinearAdd one of whose operands comes from a group-1 convolution that feeds
// nothing else is fused into it (fuse_add; ai.onnxq QLinearConvAdd): that operand's value then no
// longer exists either.
StatusOr<QdqLoweringStats> LowerQdqToInteger(Model& model, bool channels_last = true,
                                             bool fuse_add = true);

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
