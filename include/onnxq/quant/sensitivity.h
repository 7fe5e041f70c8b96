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

// The sensitivity's damage of output `q` against the float output `ref` ([N, ...]): mean softmax
// KL per sample (`kl`) or MSE relative to ref's mean square (`mse`).
double OutputDamage(const std::string& metric, const Tensor& ref, const Tensor& q);

// Refinement of an allocation by measuring the whole model. The summed per-layer damage misses
// how layers' errors combine (MobileNetV2: the measured loss is ~1.7x the sum), so each round
// re-measures every layer's damage in the context of the current allocation (that layer one
// candidate width up or down, every other layer at its allocated width, activations
// fake-quantized with the plan's ranges), then tries swaps (one layer up a width, others down a
// width to stay in the budget, least damage per cost saved first), best predicted first, each
// measured on the whole model and kept only if the loss goes down by min_gain. Loss = the sensitivity's
// metric on the same samples (the last `samples` calibration samples), weights rounded as the
// sensitivity does. Stops after `rounds` rounds or a round without an improvement.
struct AllocationRefineOptions {
  int rounds = 0;        // 0 = off
  int evaluations = 8;   // whole-model measurements per round, at most
  int max_down = 4;      // layers moved down per swap, at most (small, local moves)
  double min_gain = 0.01;  // relative loss decrease a swap must measure to be kept
  bool both_halves = true;  // ... and a decrease on each half of the samples
};
struct AllocationRefineResult {
  std::vector<int> bits;         // plan.weighted order
  double initial_loss = 0;       // measured loss of the input allocation
  double final_loss = 0;         // of the returned one (never above initial_loss)
  int evaluations = 0;           // whole-model loss measurements of candidates
  int accepted = 0;
  int changed_layers = 0;        // layers whose width differs from the input allocation
  struct Candidate {
    int round = 0, changed = 0;  // layers changed from the current allocation
    double predicted = 0;                  // current loss + the summed measured changes
    double measured = 0;
    bool accepted = false;
  };
  std::vector<Candidate> candidates;
  double seconds = 0;
  std::string ToJson() const;
};
// `plan` must have its activation parameters chosen (they are fake-quantized); `bits` must fit
// `budget`, and the result does too.
StatusOr<AllocationRefineResult> RefineAllocation(const Model& model, const QdqPlan& plan,
                                                  CalibrationSource& calibration, const WeightOptions& base,
                                                  RoundingMethod rounding,
                                                  const std::vector<LayerHessian>* hessians,
                                                  const RoundingOptions& rounding_options,
                                                  const SensitivityOptions& sensitivity_options,
                                                  const Budget& budget, int act_bits, const std::vector<int>& bits,
                                                  const std::vector<int>& allowed_bits,
                                                  const AllocationRefineOptions& options);

}  // namespace onnxq::quant
