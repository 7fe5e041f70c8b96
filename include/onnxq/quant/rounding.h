// Weight rounding beyond round-to-nearest, and per-layer weight bit widths.
//
// GPTQ (Frantar et al. 2022): with a layer's inputs X (im2col patches for Conv), the output error
// of quantized weights Q is ||(W - Q) X||^2 = tr((W - Q) H (W - Q)^T) with H = X X^T. Columns are
// quantized one after the other and the rounding error of each is pushed onto the columns not yet
// quantized through the inverse Hessian (Cholesky form), so later roundings compensate earlier
// ones. The scales are chosen first (max-abs or MSE per output channel) and stay fixed; only the
// integer codes change. A grouped convolution has one Hessian per group (a depthwise conv one
// kh*kw Hessian per channel).
#pragma once

#include <cstdint>
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

enum class RoundingMethod { kNearest, kGptq };
StatusOr<RoundingMethod> ParseRounding(const std::string& s);  // nearest|gptq
const char* RoundingName(RoundingMethod m);

// Sum of x x^T over a layer's input vectors: one k x k block per group (row-major, double).
// groups == 0 means the layer's geometry is not supported by GPTQ (it then keeps nearest rounding).
struct LayerHessian {
  int64_t groups = 0;
  int64_t k = 0;
  int64_t rows = 0;          // input vectors accumulated (per group)
  std::vector<double> h;     // groups * k * k
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

struct GptqOptions {
  double damp = 0.01;      // dampening: H += damp * mean(diag H) * I
  int64_t block = 128;     // lazy-batch block size (columns)
  bool act_order = true;   // quantize columns in order of decreasing diag(H)
};

// GPTQ on one matrix: w is rows x k row-major, h is k x k row-major (sum of x x^T), one params
// entry per row (or one for all). Returns the integer codes (rows x k, row-major).
StatusOr<std::vector<int32_t>> GptqQuantizeMatrix(std::span<const float> w, int64_t rows, int64_t k,
                                                  std::span<const double> h,
                                                  std::span<const QuantParams> params,
                                                  const GptqOptions& options = {});

// Quantizes the weights of every plan.weighted[i] with bits[i] (2..8) and the scale method of
// `base` (bits in `base` is ignored), then, when `hessians` is given, re-rounds each supported
// layer with GPTQ (layers in parallel on `pool`).
Status QuantizeWeightsMixed(const Model& model, QdqPlan& plan, const std::vector<int>& bits,
                            const WeightOptions& base, const std::vector<LayerHessian>* hessians,
                            const GptqOptions& gptq, ThreadPool* pool);

// GPTQ re-rounding of one weighted node whose qweight (scales) is already set. Layers whose
// Hessian saw fewer input vectors than the layer has inputs keep nearest rounding.
Status GptqRoundLayer(const Model& model, WeightedNode& w, const LayerHessian& h,
                      const GptqOptions& options);

}  // namespace onnxq::quant
