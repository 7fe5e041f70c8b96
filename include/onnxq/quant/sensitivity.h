// Per-layer sensitivity to weight quantization: for every quantizable layer and candidate weight
// bit width, the damage to the model's output with only that layer's weights quantized (with the
// configured scale method and rounding) and everything else in float, measured on calibration
// samples against the float model: mean KL(softmax(float) || softmax(quantized)) of the first
// output (`kl`), or its mean squared error relative to the float output's mean square (`mse`).
// The bit allocator (bit_allocation.h) minimises the sum of these numbers under a budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/quant/bit_allocation.h"
#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/rounding.h"

namespace onnxq::quant {

class CalibrationSource;
struct QuantizeConfig;

struct SensitivityOptions {
  std::vector<int> bits = {2, 3, 4, 5, 6, 7, 8};
  int64_t samples = 64;         // the last calibration samples (the rounding fits the first ones)
  std::string metric = "auto";  // kl | mse | auto (kl when the first output is [N, classes])
  int threads = 0;
};

struct LayerSensitivity {
  std::string node;     // node name (the key used by QuantizeConfig::layer_weight_bits)
  std::string op;
  std::string weight;   // weight initializer name
  LayerCost cost;
  std::vector<std::pair<int, double>> damage;  // (bits, damage), bits ascending
};

struct SensitivityResult {
  std::string metric;
  std::string rounding;
  std::string weight_scale;
  std::string weight_grid;  // full | narrow (below 8 bits)
  int64_t samples = 0;
  double seconds = 0;
  std::vector<LayerSensitivity> layers;
  std::string ToJson() const;
};

// The key a weighted node is known by in configs and reports: its name, or "#<weight name>" for
// unnamed nodes.
std::string LayerKey(const Graph& g, const WeightedNode& w);
// Parameters, output channels and MACs per sample of every weighted node.
std::vector<LayerCost> LayerCosts(const Model& model, const QdqPlan& plan);

// On the optimized model and its plan (weights not yet quantized). `rounding` (with
// rounding_options for its settings and the weight grid) re-rounds each layer on `hessians`
// (float-model inputs: the layer is measured alone in an otherwise float model).
StatusOr<SensitivityResult> MeasureSensitivity(const Model& model, const QdqPlan& plan,
                                               CalibrationSource& calibration, const WeightOptions& base,
                                               RoundingMethod rounding,
                                               const std::vector<LayerHessian>* hessians,
                                               const RoundingOptions& rounding_options,
                                               const SensitivityOptions& options);

// Chooses per-layer bits (returned in plan.weighted order) minimising the summed damage under
// `budget`, among the bit widths the sensitivity measured (and in allowed_bits, unless empty).
StatusOr<std::vector<int>> AllocateBits(const Model& model, const QdqPlan& plan,
                                        const SensitivityResult& sensitivity, const Budget& budget,
                                        int act_bits, const std::vector<int>& allowed_bits = {});

}  // namespace onnxq::quant
