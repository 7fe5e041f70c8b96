// Weight rounding beyond round-to-nearest, and per-layer weight bit widths.
//
// GPTQ (Frantar et al. 2022): with a layer's inputs X (im2col patches for Conv), the output error
// of quantized weights Q is ||(W - Q) X||^2 = tr((W - Q) H (W - Q)^T) with H = X X^T. Columns are
// quantized one after the other and the rounding error of each is pushed onto the columns not yet
// quantized through the inverse Hessian (Cholesky form), so later roundings compensate earlier
// ones. The scales are chosen first (max-abs or MSE per output channel) and stay fixed; only the
// integer codes change. A grouped convolution has one Hessian per group (a depthwise conv one
// kh*kw Hessian per channel).
//
// AdaRound (Nagel et al. 2020): each code is floor(w / s) + h(v) with a soft rounding variable
// h(v) = clip(sigmoid(v) (zeta - gamma) + gamma, 0, 1) optimised by Adam on the same quadratic
// output error (exact full-data gradients from the Gram matrix: 2 (Q - W) H per iteration, no
// sample passes), with an annealed regulariser 1 - |2h - 1|^beta that drives h to 0 or 1.
//
// Asymmetric objective: with X the layer's inputs in the float model and X_q its inputs in the
// model quantized so far (layers in topological order, the quantized prefix running fake-quant),
// the codes minimise ||Q X_q - W X||^2 = ||(Q - W*) X_q||^2 + const, where
// W* = W + W (C^T - H)(H + lambda I)^-1 with H = X_q X_q^T and C = X_q X^T (the least-squares
// target, ridge-damped towards W). Each layer then compensates the error of the layers before it
// instead of passing it on. GPTQ or AdaRound then round W* with H.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/quant_params.h"

namespace onnxq {
class ThreadPool;
}

namespace onnxq::quant {

class CalibrationSource;

enum class RoundingMethod { kNearest, kGptq, kAdaRound };
StatusOr<RoundingMethod> ParseRounding(const std::string& s);  // nearest|gptq|adaround
const char* RoundingName(RoundingMethod m);

// Sum of x x^T over a layer's input vectors: one k x k block per group (row-major, double).
// groups == 0 means the layer's geometry is not supported by GPTQ (it then keeps nearest rounding).
struct LayerHessian {
  int64_t groups = 0;
  int64_t k = 0;
  int64_t rows = 0;          // input vectors accumulated (per group)
  std::vector<double> h;     // groups * k * k
  // Asymmetric objective only: sum of x_q x^T (quantized-model input times float-model input),
  // groups * k * k row-major; empty for the plain (float-input) objective.
  std::vector<double> c;
  std::string unsupported;   // why groups == 0
};

struct HessianOptions {
  int64_t samples = 64;      // calibration samples (the first ones)
  int64_t batch_size = 8;
  int threads = 0;
  // Use the layer inputs after their own activation fake-quantization (what the quantized layer
  // actually multiplies) instead of the float inputs.
  bool quantized_inputs = false;
};

// One Hessian per plan.weighted entry (same order), from runs of the float `model` (the optimized
// model the plan is on; activation params must be set when quantized_inputs).
StatusOr<std::vector<LayerHessian>> CollectHessians(const Model& model, const QdqPlan& plan,
                                                    CalibrationSource& calibration,
                                                    const HessianOptions& options);

// Factors of H^-1 that GPTQ computed, by H's contents, for reuse by later calls on the same H
// (the sensitivity rounds every layer at each candidate width). Thread-safe.
class GptqFactorCache;
std::shared_ptr<GptqFactorCache> NewGptqFactorCache();

struct GptqOptions {
  double damp = 0.01;      // dampening: H += damp * mean(diag H) * I
  int64_t block = 128;     // lazy-batch block size (columns)
  bool act_order = true;   // quantize columns in order of decreasing diag(H)
  std::shared_ptr<GptqFactorCache> factors;  // optional: reuse factors across calls
};

struct AdaRoundOptions {
  int64_t iters = 1000;     // Adam steps per layer
  double lr = 0.01;         // Adam learning rate on the rounding variables
  double lambda = 1.0;      // regulariser weight (loss in grid units with H scaled to mean diag 1)
  double warmup = 0.2;      // fraction of the steps without the regulariser
  double beta_start = 20, beta_end = 2;  // annealing of the regulariser's exponent
  // Also run GPTQ on the layer and keep, per output channel, the codes with the lower objective.
  bool keep_better_gptq = true;
};

// Everything that decides how codes are chosen once the scales are set.
struct RoundingOptions {
  RoundingMethod method = RoundingMethod::kGptq;
  GptqOptions gptq;
  AdaRoundOptions adaround;
  // Below 8 bits, use the full signed grid [-2^(b-1), 2^(b-1) - 1] (e.g. [-8, 7]) instead of the
  // narrow symmetric one ([-7, 7]); 8-bit weights stay narrow ([-127, 127]) for ONNX Runtime's
  // u8 x s8 kernels.
  bool full_grid = false;
  // With full_grid: per output channel, the full grid or its mirror ([-7, 8] at 4 bits, [-1, 2] at
  // 2), whichever quantizes the channel's weights with the lower squared error. The mirror is the
  // full grid with a negative scale (same packed size); the extra level goes to the side of the
  // channel's heavier tail (e.g. a classifier's large positive weights).
  bool oriented_grid = false;
  // Orientation is chosen only for layers at most this wide (the full grid's asymmetry is 2:1 at
  // 2 bits, 4:3 at 3 bits; at 3 and 4 bits the mirror lowered MobileNetV2's KL but not its top-1).
  int oriented_max_bits = 7;
  // Ridge of the asymmetric target, relative to mean(diag H): the least-squares target has k free
  // values per output channel and overfits the calibration samples without it.
  double target_damp = 0.1;
};

// GPTQ on one matrix: w is rows x k row-major, h is k x k row-major (sum of x x^T), one params
// entry per row (or one for all). Returns the integer codes (rows x k, row-major).
StatusOr<std::vector<int32_t>> GptqQuantizeMatrix(std::span<const float> w, int64_t rows, int64_t k,
                                                  std::span<const double> h,
                                                  std::span<const QuantParams> params,
                                                  const GptqOptions& options = {});

// AdaRound on one matrix (same layout and result as GptqQuantizeMatrix): w is the target,
// h the Gram matrix (k x k), or one per row (rows x k x k: e.g. the channels of a depthwise
// convolution batched into one call). Single-threaded and deterministic.
StatusOr<std::vector<int32_t>> AdaRoundQuantizeMatrix(std::span<const float> w, int64_t rows, int64_t k,
                                                      std::span<const double> h,
                                                      std::span<const QuantParams> params,
                                                      const AdaRoundOptions& options = {});

// The asymmetric target W* = W + W (C^T - H)(H + damp * mean(diag H) I)^-1 (rows x k, row-major).
StatusOr<std::vector<float>> AsymmetricTarget(std::span<const float> w, int64_t rows, int64_t k,
                                              std::span<const double> h, std::span<const double> c,
                                              double damp);

// Quantizes the weights of every plan.weighted[i] with bits[i] (2..8) and the scale method of
// `base` (bits in `base` is ignored), then, when `hessians` is given, re-rounds each supported
// layer with rounding.method (layers in parallel on `pool`).
Status QuantizeWeightsMixed(const Model& model, QdqPlan& plan, const std::vector<int>& bits,
                            const WeightOptions& base, const std::vector<LayerHessian>* hessians,
                            const RoundingOptions& rounding, ThreadPool* pool);

// Re-rounding (GPTQ or AdaRound) of one weighted node whose qweight (scales) is already set, on
// the layer's Gram matrices (asymmetric target when h.c is set). Layers whose Hessian saw fewer
// input vectors than the layer has inputs keep nearest rounding (a classifier after global
// pooling: one vector per image; damped re-rounding on such H and a stand-in H from the
// positions before the pool both measured worse than nearest on MobileNetV2). Per output channel,
// the incoming (nearest) codes are kept where they reach a lower objective than the re-rounded
// ones. `pool` (optional) splits the work into fixed blocks (the result does not depend on the
// thread count).
Status RoundLayer(const Model& model, WeightedNode& w, const LayerHessian& h,
                  const RoundingOptions& options, ThreadPool* pool = nullptr);

// Asymmetric objective, end to end: quantizes every plan.weighted[i] with bits[i] (scales as in
// QuantizeWeightsMixed), then re-rounds the layers one after the other in topological order, each
// on H = X_q X_q^T and C = X_q X^T from the first hessian_options.samples calibration samples run
// through the float model and through the model quantized so far (fake-quantized activations,
// dequantized weights of the layers already done, float biases). Layers whose geometry GPTQ does
// not handle keep nearest rounding. Returns the collected statistics (plan.weighted order).
StatusOr<std::vector<LayerHessian>> QuantizeWeightsSequential(
    const Model& model, QdqPlan& plan, const std::vector<int>& bits, const WeightOptions& base,
    CalibrationSource& calibration, const HessianOptions& hessian_options,
    const RoundingOptions& rounding, ThreadPool* pool);

// Relative output error of a layer's current codes on its Gram matrices:
// tr((Q - T) H (Q - T)^T) / tr(T H T^T) with T the layer's target (W, or W* when h.c is set).
// -1 when the layer is not supported.
double RoundingLoss(const Model& model, const WeightedNode& w, const LayerHessian& h, double damp);
// The objective per output channel (group-major): (q - t) H (q - t)^T; empty when unsupported.
std::vector<double> RowLosses(const Model& model, const WeightedNode& w, const LayerHessian& h, double damp);

}  // namespace onnxq::quant
