// Uniform affine quantization as ONNX QuantizeLinear / DequantizeLinear define it:
//   q = saturate(round_half_to_even(x / scale) + zero_point),   x' = (q - zero_point) * scale
// (float32 arithmetic, division by the scale, not multiplication by its reciprocal). Everything
// that simulates or exports quantization goes through these functions so that the simulation and
// the exported model compute the same numbers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/ir/types.h"

namespace onnxq::quant {

// How a tensor is quantized. Bit widths below 8 live in 8-bit containers with the integer range
// restricted to the bit width (4-bit signed: [-8, 7], or [-7, 7] with narrow_range).
struct QuantSpec {
  int bits = 8;              // 2..8, or 16
  bool is_signed = true;     // int8/int16 container vs uint8/uint16
  bool symmetric = false;    // zero point fixed at the middle (0 for signed, 2^(bits-1) unsigned)
  bool narrow_range = false; // signed: drop the most negative level (-2^(bits-1)); see qmin()

  int32_t qmin() const;
  int32_t qmax() const;
  // The ONNX element type that stores the integers: kInt8/kUint8 for bits <= 8, kInt16/kUint16.
  DataType storage_type() const;
  Status Validate() const;
  std::string ToString() const;  // "int8", "uint4-in-uint8 narrow symmetric", ...
};

// One (scale, zero point) pair with the integer range it saturates to.
struct QuantParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = -128;
  int32_t qmax = 127;

  // Real-valued interval the integers cover: [(qmin - zp) * scale, (qmax - zp) * scale].
  double range_min() const { return (double(qmin) - zero_point) * double(scale); }
  double range_max() const { return (double(qmax) - zero_point) * double(scale); }
};

// Smallest scale ComputeQuantParams returns: keeps 1/scale finite and x/scale from overflowing for
// all-zero or denormal-range tensors.
inline constexpr float kMinScale = 1.0e-20f;

// Parameters for the real interval [lo, hi]. The interval is first widened to contain 0 (so zero is
// exactly representable); then
//  - symmetric: T = max(|lo|, |hi|); signed: zp = 0, scale = T / qmax;
//               unsigned: zp = 2^(bits-1), scale = T / (qmax - zp) (T maps to qmax);
//               if lo >= 0 and the spec is unsigned, zp = 0 and scale = hi / qmax instead, so
//               non-negative data (after ReLU) uses the whole unsigned range;
//  - asymmetric: scale = (hi - lo) / (qmax - qmin), zp = qmin - round_half_even(lo / scale),
//                clamped to [qmin, qmax] (the zero-point nudge of the usual TF/ORT recipe).
// scale is rounded to float32 and is at least kMinScale; a zero range gets scale 1. Fails on non-finite or inverted input.
StatusOr<QuantParams> ComputeQuantParams(double lo, double hi, const QuantSpec& spec);

// ONNX QuantizeLinear of one value (NaN maps to the zero point).
inline int32_t QuantizeValue(float x, const QuantParams& p);
inline float DequantizeValue(int32_t q, const QuantParams& p) {
  return static_cast<float>(q - p.zero_point) * p.scale;
}
inline float FakeQuantizeValue(float x, const QuantParams& p) {
  return DequantizeValue(QuantizeValue(x, p), p);
}

// Array forms. Per-tensor when params.size() == 1, else per channel along `axis` of `dims`
// (params.size() must equal dims[axis]). Outputs are int32 so that every bit width fits.
Status QuantizeArray(std::span<const float> x, const std::vector<int64_t>& dims, int axis,
                     std::span<const QuantParams> params, std::span<int32_t> out);
Status DequantizeArray(std::span<const int32_t> q, const std::vector<int64_t>& dims, int axis,
                       std::span<const QuantParams> params, std::span<float> out);
Status FakeQuantizeArray(std::span<const float> x, const std::vector<int64_t>& dims, int axis,
                         std::span<const QuantParams> params, std::span<float> out);
// Fast per-tensor fake quantization of a contiguous buffer (in place allowed).
void FakeQuantize(const float* x, float* out, int64_t n, const QuantParams& p);

// Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - y)^2). +inf when y == x,
// -inf when x is all zeros but y is not, NaN when the sizes differ.
double Sqnr(std::span<const float> reference, std::span<const float> approx);

// ------------------------------------------------------------------------------------- inline

inline int32_t QuantizeValue(float x, const QuantParams& p) {
  // float32 division then round-half-to-even, as the ONNX reference and ONNX Runtime compute it.
  float r = __builtin_nearbyintf(x / p.scale);
  if (!(r == r)) return p.zero_point;
  float lo = static_cast<float>(p.qmin - p.zero_point), hi = static_cast<float>(p.qmax - p.zero_point);
  r = r < lo ? lo : (r > hi ? hi : r);
  return static_cast<int32_t>(r) + p.zero_point;
}

}  // namespace onnxq::quant
