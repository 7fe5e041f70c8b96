// Data-driven activation-channel equalization for linear tensors (static QDQ only).
//
// QDQ needs one scale per activation tensor, but the linear tensors of a network (projection-conv
// outputs of inverted-residual blocks, residual Add outputs) have channels whose ranges differ by
// 5-10x, so the small channels get few levels. For such a tensor an exact float rewrite moves most
// of the per-channel benefit into the weights: channel c is multiplied by s_c > 0 at its producer
// (the producing Conv/Gemm/MatMul's output channel c weights and bias x s_c) and divided back in
// every consumer (the consuming Conv/Gemm/MatMul's input channel c weights x 1/s_c).
//
// Tensors joined by residual Adds carry the same channel scaling, so they form one group with one s.
// Ops that commute with a positive per-channel scale pass the group on (Relu, MaxPool, AveragePool,
// GlobalAveragePool, Add of two members). Anything else (a graph output, Clip/ReLU6, which is not
// homogeneous, a non-weighted consumer, shared weights, unknown shapes) leaves the group unchanged,
// with the reason in the report.
//
// Scales: r_c = max over the group's tensors of channel c's max-abs on the first `samples`
// calibration samples, R = max_c r_c, s_c = min((R / r_c)^alpha, max_scale): only small channels
// are amplified, so consumer weights only shrink; the cap bounds how much the consumer's weight
// rounding error on column c grows (it is multiplied by s_c).
//
// Measured on the shared MobileNetV2 it does not help (docs/quantization.md, "Ideas measured"):
// that model's weights lie on a per-channel int8 grid, which the consumer rewrite leaves, and the
// residual groups share one s, which flattens their channel ranges. Off by default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"

namespace onnxq::quant {

class CalibrationSource;

struct ActEqualizationOptions {
  double alpha = 1.0;       // s_c = (R / r_c)^alpha
  double max_scale = 16.0;  // cap on s_c (>= 1)
  int64_t samples = 16;     // calibration samples for the per-channel statistics
  int64_t batch_size = 8;
  int threads = 0;
};

// One candidate group of linear tensors.
struct ActEqualizationGroup {
  std::vector<ValueId> members;    // tensors carrying the scaling
  std::vector<NodeId> producers;   // Conv/Gemm/MatMul whose output channels are scaled
  std::vector<NodeId> consumers;   // Conv/Gemm/MatMul whose input channels are scaled back
  int64_t channels = 0;
  std::string skip_reason;         // empty: eligible
  // Filled when applied.
  bool applied = false;
  std::vector<double> range;       // r_c
  std::vector<double> scale;       // s_c
};

// The groups of `graph` (structure only, no data): eligible ones and skipped ones with a reason.
// Groups are found from every Conv/Gemm/MatMul output that is not consumed only by ops the method
// cannot cross trivially (a Conv whose output goes straight into a Clip is not reported).
std::vector<ActEqualizationGroup> FindActEqualizationGroups(const Graph& graph);

// Scales the eligible groups of `groups` in `model` from the per-channel ranges in each group's
// `range` (size = channels); exact in float up to rounding. Marks them applied.
Status ApplyActEqualization(Model& model, std::vector<ActEqualizationGroup>& groups,
                            const ActEqualizationOptions& options);

struct ActEqualizationResult {
  std::vector<ActEqualizationGroup> groups;
  int64_t samples = 0;
  double ms = 0;
  std::string ToJson(const Graph& graph) const;
};

// Finds the groups, measures per-channel max-abs of their tensors on the first options.samples
// calibration samples (float model) and applies the rewrite. Initializer ids are kept (values are
// replaced in place), so a QDQ plan built on `model` stays valid.
StatusOr<ActEqualizationResult> EqualizeActivations(Model& model, CalibrationSource& calibration,
                                                    const ActEqualizationOptions& options);

}  // namespace onnxq::quant
