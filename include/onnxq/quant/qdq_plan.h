// The quantization plan over an optimized float model: which nodes run quantized, which activation
// tensors get a QuantizeLinear/DequantizeLinear pair (and which of them must share one scale), and
// the quantized weights and biases. The same plan drives the fake-quant simulation in onnxq's
// executor and the QDQ export, so both mean the same arithmetic.
//
// Rules (chosen so ONNX Runtime's QDQ transformer fuses the result into its integer kernels):
//  - quantized ops: Conv, Gemm, MatMul, Add, Mul, Concat, MaxPool, AveragePool, GlobalAveragePool;
//    their float activation inputs get Q/DQ. Conv/Gemm/MatMul weights (initializers) become int8
//    with per-channel (or per-tensor) scales, biases int32 with scale = input scale x weight scale.
//  - an op's output gets Q/DQ only when a quantized op consumes it (directly or through
//    pass-through ops), so e.g. a classifier feeding the graph output stays float (more accurate;
//    ONNX Runtime then runs that one node in float with dequantized weights).
//  - activation groups from the pass manager (Conv -> Clip/Relu, Node::meta "onnxq.group") are one
//    unit: the Q/DQ goes after the activation, never between.
//  - pass-through ops (Reshape, Flatten, Transpose, Squeeze, Unsqueeze, MaxPool) and Concat share one
//    (scale, zero point) between inputs and output, which ONNX Runtime requires to drop or fuse them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/quant/quant_params.h"
#include "onnxq/quant/weight_quant.h"

namespace onnxq::quant {

struct PlanOptions {
  // Node names or op types left in float.
  std::vector<std::string> exclude;
  // Q/DQ on float graph inputs. An image normalised from 8-bit pixels lies on a lattice that no
  // uint8 grid containing 0 reproduces (x / 127.5 - 1 sits half a step off every such grid), so
  // quantizing it adds error to every pixel; with false the consumers (e.g. the first Conv, on
  // int8 weights with a float bias) run on the float input. On MobileNetV2 false lowered the
  // mean KL by ~10 % (docs/quantization.md) for 3.6 % of the FLOPs left in float.
  bool quantize_graph_inputs = true;
};

// Activation tensors that share one (scale, zero point).
struct ActivationGroup {
  std::vector<ValueId> members;   // every tensor of the group that carries Q/DQ in the export
  std::vector<ValueId> observed;  // tensors whose statistics define the range (a subset)
  std::vector<ValueId> simulated; // members the simulation fake-quantizes (others stay on the grid)
  // Bounds of a fused Clip/Relu producing a member: the quantized range is kept inside them so that
  // ONNX Runtime can drop the activation before QuantizeLinear (ClipQuantFusion / ReluQuantFusion)
  // without changing the result.
  double bound_lo = -1e300, bound_hi = 1e300;
  // Filled by calibration.
  bool has_params = false;
  QuantParams params;
  std::string calibrator;
  double clip_lo = 0, clip_hi = 0;  // range chosen by the calibrator
  double observed_min = 0, observed_max = 0;
};

// A Conv / Gemm / MatMul with a constant weight.
struct WeightedNode {
  NodeId node = kNoNode;
  ValueId input = kNoValue;   // activation input (slot 0; for MatMul the non-constant side)
  ValueId weight = kNoValue;  // float initializer
  ValueId bias = kNoValue;    // float initializer or kNoValue
  int weight_slot = 1;
  int axis = 0;               // output-channel axis of the weight
  ValueId preact = kNoValue;  // the node's own output (before a fused activation)
  // Filled by weight quantization.
  QuantizedWeight qweight;
  bool has_qbias = false;
  QuantizedBias qbias;
};

struct QdqPlan {
  std::vector<ActivationGroup> groups;
  std::map<ValueId, int> group_of;    // activation tensor -> group index
  std::vector<WeightedNode> weighted;
  std::vector<NodeId> quantized_nodes;
  std::vector<std::string> notes;     // exclusions and ops left in float, with the reason

  const ActivationGroup* GroupOf(ValueId v) const {
    auto it = group_of.find(v);
    return it == group_of.end() ? nullptr : &groups[static_cast<size_t>(it->second)];
  }
};

// Builds the plan over `model` (already optimized: the pass manager's default pipeline).
StatusOr<QdqPlan> BuildQdqPlan(const Model& model, const PlanOptions& options);

// Keeps a group's params inside its fused activation's bounds (nudging the scale down by ulps).
QuantParams FitIntoBounds(QuantParams p, double lo, double hi);

// Quantizes every weighted node's weight (and bias, once its input has params; a node whose input
// is not quantized keeps a float bias).
struct WeightOptions {
  int bits = 8;
  bool per_channel = true;
  WeightScaleMethod method = WeightScaleMethod::kMinMax;
};
Status QuantizeWeights(const Model& model, QdqPlan& plan, const WeightOptions& options,
                       ThreadPool* pool = nullptr);
// (Re)quantizes the biases from the current float bias initializers of `model`.
Status QuantizeBiases(const Model& model, QdqPlan& plan);

// ---- simulation (qdq_simulate.cc)
// A copy of `model` whose weights and biases are replaced by their dequantized values, plus the
// hook that fake-quantizes every simulated activation in place: running it in the executor
// computes exactly what the exported QDQ model means (float QuantizeLinear/DequantizeLinear
// semantics).
StatusOr<Model> BuildSimulationModel(const Model& model, const QdqPlan& plan);
// Values the simulation hook must see, and the hook itself. Graph inputs are never produced by a
// node, so FakeQuantizeFeeds handles them.
std::vector<ValueId> SimulatedValues(const QdqPlan& plan);
Status FakeQuantizeTensor(const QdqPlan& plan, ValueId v, Tensor& t);
Status FakeQuantizeFeeds(const QdqPlan& plan, const Graph& graph, std::map<std::string, Tensor>& feeds);


// ---- export (qdq_export.cc)
struct ExportQdqOptions {
  // Graph-output tensors keep their float name; the model gets onnxq metadata (config summary).
  std::vector<std::pair<std::string, std::string>> metadata;
};
// The QDQ model: int8 weights with (per-channel) DequantizeLinear, int32 biases, and
// QuantizeLinear/DequantizeLinear pairs on every planned activation. Opset >= 13.
StatusOr<Model> ExportQdqModel(const Model& model, const QdqPlan& plan, const ExportQdqOptions& options = {});

}  // namespace onnxq::quant
