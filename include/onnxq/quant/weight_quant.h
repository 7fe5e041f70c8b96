// Weight and bias quantization: symmetric per-tensor or per-channel scales (max-abs or searched for
// the least squared error), integers stored in int8 (bits 2..8) or int16 (16) with the range
// restricted to the bit width, and int32 biases with scale = input scale x weight scale.
#pragma once

#include <span>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/quant/quant_params.h"

namespace onnxq {
class ThreadPool;
}

namespace onnxq::quant {

enum class WeightScaleMethod {
  kMinMax,  // scale = max|w| / qmax
  kMse,     // scale = r * max|w| / qmax with r in [min_ratio, 1] minimising sum (w - fq(w))^2
};

struct WeightQuantOptions {
  int bits = 8;
  // Quantization axis (the output-channel axis: 0 for Conv [M, C/g, kH, kW], 1 for a MatMul or
  // Gemm weight [K, N]); -1 (or per_channel = false) means one scale for the whole tensor.
  bool per_channel = true;
  int axis = 0;
  WeightScaleMethod method = WeightScaleMethod::kMinMax;
  // Signed symmetric with zero point 0. Narrow range ([-(2^(b-1)-1), 2^(b-1)-1], e.g. [-127, 127]
  // or [-7, 7]) keeps the grid symmetric; ONNX Runtime's own recipe uses it for int8 weights.
  bool narrow_range = true;
  // MSE search: a coarse grid of ratios r = 1, 1 - step, ..., >= min_ratio, then a fine grid of
  // `fine_steps` ratios on each side of the best coarse one.
  double mse_min_ratio = 0.2;
  double mse_coarse_step = 0.02;
  int mse_fine_steps = 10;

  QuantSpec spec() const { return QuantSpec{bits, true, true, narrow_range}; }
};

struct QuantizedWeight {
  Tensor q;                          // int8 (bits <= 8) or int16, same dims as the float weight
  std::vector<QuantParams> params;   // one per channel (size dims[axis]) or one
  int axis = -1;                     // normalised axis, -1 for per-tensor
  double sqnr_db = 0;                // of the whole tensor, fake-quantized vs float

  std::vector<float> scales() const;
};

// Quantizes a float32 weight. Fails on non-finite values (naming the first offending index) or a
// bad axis. `pool` (optional) parallelises over channels.
StatusOr<QuantizedWeight> QuantizeWeight(const Tensor& weight, const WeightQuantOptions& options,
                                         ThreadPool* pool = nullptr);

// Just the scale choice of one channel's values (absmax and MSE search), shared with callers that
// quantize weights themselves (e.g. a rounding optimiser).
QuantParams ChooseSymmetricParams(std::span<const float> values, const WeightQuantOptions& options);

struct QuantizedBias {
  Tensor q;                   // int32, same dims as the bias
  std::vector<float> scales;  // float32(input_scale * weight_scale[c]), one per channel or one
  int64_t saturated = 0;      // values clamped to the int32 range (non-zero means a bad scale)
};

// bias_q[c] = saturate_int32(round_half_even(bias[c] / (input_scale * weight_scales[c]))), the
// product computed in float32 exactly as the exported DequantizeLinear will see it. weight_scales
// has one entry (per-tensor) or one per bias element.
StatusOr<QuantizedBias> QuantizeBias(const Tensor& bias, float input_scale,
                                     std::span<const float> weight_scales);

}  // namespace onnxq::quant
